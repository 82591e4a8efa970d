"""Which partners the gateway can reach, from the directory file and the format plugins."""

from __future__ import annotations

from pathlib import Path

import pytest
from pimms_contracts.partners import load_directory
from pimms_partner_gateways.adapters.registry import FORMATS, PartnerLink, PartnerNetwork
from pimms_partner_gateways.settings import GatewaySettings
from pimms_servicekit.settings import SettingsError


@pytest.fixture
def network() -> PartnerNetwork:
    return PartnerNetwork(load_directory())


def test_formats_are_keyed_by_the_directory_format() -> None:
    assert set(FORMATS) == {"edf", "la-poste"}
    assert all(adapter.format == name for name, adapter in FORMATS.items())


@pytest.mark.parametrize(
    ("partner_id", "topic"),
    [
        ("edf", "pimms.partner.edf.referrals.v1"),
        ("la-poste", "pimms.partner.la-poste.referrals.v1"),
    ],
)
def test_kafka_partners_with_a_format_are_reachable(
    network: PartnerNetwork, partner_id: str, topic: str
) -> None:
    link = network.reach(partner_id)
    assert isinstance(link, PartnerLink)
    assert link.adapter is FORMATS[partner_id]
    assert link.transport.kind == "kafka"
    assert getattr(link.transport, "topic", None) == topic


@pytest.mark.parametrize("partner_id", ["eau-grand-lyon", "sncf", "prefecture-69"])
def test_partners_without_a_plugin_yet_have_no_adapter(
    network: PartnerNetwork, partner_id: str
) -> None:
    assert network.reach(partner_id) == "no_adapter"


def test_a_partner_missing_from_the_directory_is_unknown(network: PartnerNetwork) -> None:
    assert network.reach("acme") == "unknown_partner"


def test_only_kafka_partners_with_a_format_have_their_topics_read(network: PartnerNetwork) -> None:
    assert [
        (p.partner_id, p.referrals_topic, p.responses_topic) for p in network.kafka_partners()
    ] == [
        ("edf", "pimms.partner.edf.referrals.v1", "pimms.partner.edf.responses.v1"),
        ("la-poste", "pimms.partner.la-poste.referrals.v1", "pimms.partner.la-poste.responses.v1"),
    ]


def test_a_directory_with_its_own_topics_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text(
        """
[[partner]]
id = "edf"
operator = "EDF"
categories = ["energy_bill"]
territory = "all"
format = "edf"
ack_within = "48h"
resolve_within = "15d"
transport = { kind = "kafka", referrals_topic = "edf.in", responses_topic = "edf.out" }
""",
        encoding="utf-8",
    )
    [edf] = PartnerNetwork(load_directory(path)).kafka_partners()
    assert (edf.referrals_topic, edf.responses_topic) == ("edf.in", "edf.out")


def test_a_bad_directory_setting_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIMMS_GATEWAYS_PARTNER_DIRECTORY", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="PIMMS_GATEWAYS_PARTNER_DIRECTORY"):
        GatewaySettings.load()


def test_the_packaged_directory_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIMMS_GATEWAYS_PARTNER_DIRECTORY", raising=False)
    settings = GatewaySettings.load()
    assert settings.partner_directory.name == "directory.toml"
    assert settings.service_name == "partner-gateways"
