"""The partner directory is data: several partners for one need, and reloads without restart."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pimms_contracts import topics
from pimms_contracts.partners import DIRECTORY_ENV
from pimms_referrals.app import build_runtime, partner_directory
from pimms_referrals.settings import ReferralsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.messages import encode
from pimms_servicekit.settings import SettingsError
from pimms_servicekit.testing import envelope_for
from structlog.testing import capture_logs

ENERGY_TWICE = """
[[partner]]
id = "edf"
operator = "EDF"
categories = ["energy_bill"]
territory = "all"
format = "edf"
ack_within = "48h"
resolve_within = "15d"
transport = { kind = "kafka" }

[[partner]]
id = "energie-solidaire-69"
operator = "Énergie solidaire du Rhône"
categories = ["energy_bill", "water_bill"]
territory = ["69"]
format = "json"
ack_within = "24h"
resolve_within = "5d"
transport = { kind = "kafka" }
"""

WATER_IN_PARIS = """
[[partner]]
id = "eau-de-paris"
operator = "Eau de Paris"
categories = ["water_bill"]
territory = ["75"]
format = "json"
ack_within = "24h"
resolve_within = "5d"
transport = { kind = "kafka" }
"""


FAMILY_FILES = """
[[partner]]
id = "caf-69"
operator = "CAF du Rhône"
categories = ["family_benefits"]
territory = ["69"]
format = "json"
ack_within = "24h"
resolve_within = "5d"
transport = { kind = "kafka" }
required_documents = ["id_card", "proof_of_address"]
"""


def write(path: Path, text: str, *, mtime: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime, mtime))  # distinct mtimes, whatever the file system's resolution


class Cases:
    def __init__(self, broker: Any, runtime: Any, directory: Any) -> None:
        self.broker = broker
        self.runtime = runtime
        self.directory = directory  # the watched file: its job runs only in a started service
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def send(self, topic: str, event: Any) -> None:
        value, headers = encode(event, envelope=envelope_for(event))
        await self.broker.publish(
            value,
            topic,
            key=str(event.case_id).encode(),
            headers={k: v.decode() for k, v in headers},
        )
        await self.runtime.relay.drain()

    def of(self, case_id: Any) -> list[tuple[str, dict[str, Any]]]:
        return [(k, d) for k, d in self.published if d["case_id"] == str(case_id)]


@pytest.fixture
async def cases(tmp_path: Path) -> AsyncIterator[Cases]:
    directory = tmp_path / "directory.toml"
    write(directory, ENERGY_TWICE, mtime=1_000_000_000_000_000_000)
    settings = ReferralsSettings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'referrals.db'}",
        partner_directory=directory,
    )
    directory_file = partner_directory(settings)
    runtime = build_runtime(settings, clock=ManualClock(), directory=directory_file)
    # the partners' own topics (and their dead letters) belong to partner-gateways
    partner_topics = {
        topics.partner_responses("energie-solidaire-69"),
        topics.partner_responses("edf"),
    }
    assert not partner_topics & {t.removesuffix(".dlt") for t in runtime.all_topics()}
    runtime.subscribe()
    runtime.use_test_broker()
    holder: dict[str, Cases] = {}

    @runtime.broker.subscriber(topics.CASES)
    async def lifecycle(msg: KafkaMessage) -> None:
        kind = msg.headers["ce_type"].removeprefix("fr.pimms.").removesuffix(".v1")
        holder["c"].published.append((kind, json.loads(msg.body)))

    await runtime.prepare_database()
    async with TestKafkaBroker(runtime.broker) as broker:
        holder["c"] = Cases(broker, runtime, directory_file)
        yield holder["c"]
    await runtime.database.dispose()


async def test_a_need_goes_to_every_matching_partner_and_closes_on_the_last(
    cases: Cases, build: Any
) -> None:
    case = build.case_opened(category="energy_bill", postal_code="69003")
    await cases.send(topics.INTAKE_CASES, case)
    requested = [d for k, d in cases.of(case.case_id) if k == "referral.requested"]
    assert [r["partner_id"] for r in requested] == ["edf", "energie-solidaire-69"]
    assert len({r["referral_id"] for r in requested}) == 2
    edf, solidaire = (r["referral_id"] for r in requested)
    case_id = str(case.case_id)
    await cases.send(
        topics.PARTNER_REPORTS, build.reported(case_id, edf, "completed", outcome="resolved")
    )
    assert cases.of(case.case_id)[-1][0] == "referral.completed"  # one referral is still open
    await cases.send(
        topics.PARTNER_REPORTS,
        build.reported(
            case_id, solidaire, "rejected", reason="duplicate", partner_id="energie-solidaire-69"
        ),
    )
    kind, closed = cases.of(case.case_id)[-1]
    assert (kind, closed["outcome"]) == ("case.closed", "partially_resolved")


async def test_withdrawal_cancels_only_the_unfinished_referrals(cases: Cases, build: Any) -> None:
    case = build.case_opened(category="energy_bill", postal_code="69003")
    await cases.send(topics.INTAKE_CASES, case)
    edf = next(d for k, d in cases.of(case.case_id) if k == "referral.requested")["referral_id"]
    await cases.send(
        topics.PARTNER_REPORTS,
        build.reported(str(case.case_id), edf, "completed", outcome="not_resolved"),
    )
    await cases.send(topics.INTAKE_CASES, build.withdrawn(case, "duplicate"))
    tail = cases.of(case.case_id)[-2:]
    assert [(k, d.get("partner_id")) for k, d in tail] == [
        ("referral.cancelled", "energie-solidaire-69"),
        ("case.closed", None),
    ]
    assert tail[1][1]["outcome"] == "withdrawn"


async def test_the_directory_is_reloaded_and_a_broken_version_is_not_taken(
    cases: Cases, build: Any, tmp_path: Path
) -> None:
    path = tmp_path / "directory.toml"
    before = build.case_opened(category="water_bill", postal_code="75001")
    await cases.send(topics.INTAKE_CASES, before)
    assert cases.of(before.case_id)[-1][0] == "referral.unroutable"

    write(path, WATER_IN_PARIS, mtime=1_000_000_001_000_000_000)
    assert cases.directory.check()
    after = build.case_opened(category="water_bill", postal_code="75001")
    await cases.send(topics.INTAKE_CASES, after)
    assert cases.of(after.case_id)[-1][1]["partner_id"] == "eau-de-paris"

    write(path, WATER_IN_PARIS.replace('"24h"', '"a day"'), mtime=1_000_000_002_000_000_000)
    with capture_logs() as logs:
        assert not cases.directory.check()
        broken = build.case_opened(category="water_bill", postal_code="75001")
        await cases.send(topics.INTAKE_CASES, broken)
    assert cases.of(broken.case_id)[-1][1]["partner_id"] == "eau-de-paris"  # the last good one
    [refused] = [e for e in logs if e["event"] == "config.refused"]
    assert refused["log_level"] == "warning"
    assert "'eau-de-paris'" in refused["error"]
    assert "ack_within" in refused["error"]
    assert refused["kept"] == "last good"


async def test_a_checklist_comes_from_the_directory_and_follows_its_changes(
    cases: Cases, build: Any, tmp_path: Path
) -> None:
    path = tmp_path / "directory.toml"
    write(path, FAMILY_FILES, mtime=1_000_000_001_000_000_000)
    assert cases.directory.check()
    case = build.case_opened(
        category="family_benefits", postal_code="69003", documents=("id_card",)
    )
    await cases.send(topics.INTAKE_CASES, case)
    kind, held = cases.of(case.case_id)[-1]
    assert (kind, held["partner_id"]) == ("referral.on_hold", "caf-69")
    assert held["missing_documents"] == ["proof_of_address"]  # nothing is sent yet

    # the partner drops a document from its checklist: the next documents release the file
    write(path, FAMILY_FILES.replace(', "proof_of_address"', ""), mtime=1_000_000_002_000_000_000)
    assert cases.directory.check()
    await cases.send(topics.INTAKE_CASES, build.documents_added(case, ("last_bill",)))
    kind, released = cases.of(case.case_id)[-1]
    assert (kind, released["referral_id"]) == ("referral.requested", held["referral_id"])


def test_the_first_directory_must_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[[partner]]\nid = 'x'\n", encoding="utf-8")
    settings = ReferralsSettings.model_construct(partner_directory=broken)
    with pytest.raises(ValueError, match="partner directory"):
        partner_directory(settings)
    monkeypatch.setenv("PIMMS_REFERRALS_PARTNER_DIRECTORY", str(broken))
    with pytest.raises(SettingsError, match="PIMMS_REFERRALS_PARTNER_DIRECTORY"):
        ReferralsSettings.load()


def test_the_platform_directory_is_read_unless_the_service_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, own = tmp_path / "platform.toml", tmp_path / "own.toml"
    write(platform, WATER_IN_PARIS, mtime=1_000_000_000_000_000_000)
    write(own, ENERGY_TWICE, mtime=1_000_000_000_000_000_000)
    monkeypatch.delenv("PIMMS_REFERRALS_PARTNER_DIRECTORY", raising=False)
    monkeypatch.setenv(DIRECTORY_ENV, str(platform))
    assert ReferralsSettings.load().partner_directory == platform
    monkeypatch.setenv("PIMMS_REFERRALS_PARTNER_DIRECTORY", str(own))
    assert ReferralsSettings.load().partner_directory == own
    monkeypatch.delenv("PIMMS_REFERRALS_PARTNER_DIRECTORY")
    monkeypatch.delenv(DIRECTORY_ENV)
    assert ReferralsSettings.load().partner_directory.name == "directory.toml"  # the packaged one
