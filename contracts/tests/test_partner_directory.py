"""The partner directory as data: partners added without code, and refusals that say where."""

from __future__ import annotations

from pathlib import Path

import pytest
from pimms_contracts.partners import (
    DEFAULT_DIRECTORY_PATH,
    DirectoryError,
    KafkaTransport,
    PartnerDirectory,
    WebhookTransport,
    directory_path,
    load_directory,
    parse_directory,
)

EDF = """
[[partner]]
id = "edf"
operator = "EDF"
categories = ["energy_bill"]
territory = "all"
format = "edf"
ack_within = "48h"
resolve_within = "15d"
transport = { kind = "kafka" }
"""

MAPPED = """
[[partner]]
id = "acme"
operator = "Acme"
categories = ["telecom"]
territory = "all"
format = "mapped-json"
ack_within = "1d"
resolve_within = "10d"
transport = { kind = "kafka" }

[partner.mapping.referral]
ref = "referral_id"
who = { name = "last_name" }

[partner.mapping.cancellation]
ref = "referral_id"
state = { const = "CANCELLED" }

[partner.mapping.response]
reference = "ref"
status = "state"
at = "at"
statuses = { OK = "received", DONE = "completed/resolved" }
"""


@pytest.fixture(scope="module")
def directory() -> PartnerDirectory:
    return load_directory()


def test_orange_and_banque_postale_serve_every_departement(directory: PartnerDirectory) -> None:
    for departement in ("69", "75", "2A", "2B", "974"):
        assert [p.id for p in directory.serving(category="telecom", departement=departement)] == [
            "orange"
        ]
        for category in ("banking", "micro_credit"):
            assert [
                p.id for p in directory.serving(category=category, departement=departement)
            ] == ["banque-postale"]


def test_orange_is_a_kafka_feed_and_banque_postale_a_signed_webhook(
    directory: PartnerDirectory,
) -> None:
    orange, bank = directory.get("orange"), directory.get("banque-postale")
    assert orange is not None
    assert bank is not None
    assert orange.all_departements
    assert (orange.format, bank.format) == ("mapped-json", "mapped-json")
    assert isinstance(orange.transport, KafkaTransport)
    assert orange.transport.referrals_topic == "pimms.partner.orange.referrals.v1"
    assert orange.transport.responses_topic == "pimms.partner.orange.responses.v1"
    assert isinstance(bank.transport, WebhookTransport)
    assert bank.transport.secret_env == "PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET"
    assert bank.transport.previous_secret_env == "PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET_PREVIOUS"


def test_the_prefecture_checklist_is_the_specification_one(directory: PartnerDirectory) -> None:
    prefecture = directory.get("prefecture-69")
    assert prefecture is not None
    assert prefecture.required_documents == (
        "id_card",
        "birth_certificate",
        "proof_of_address",
        "tax_notices",
        "language_diploma",
    )
    edf = directory.get("edf")
    assert edf is not None
    assert edf.required_documents == ()


def test_a_mapped_partner_is_read_with_its_layouts_in_order() -> None:
    [acme] = parse_directory(MAPPED).partners
    assert acme.mapping is not None
    assert acme.mapping.referral == {"ref": "referral_id", "who": {"name": "last_name"}}
    assert acme.mapping.cancellation == {"ref": "referral_id", "state": {"const": "CANCELLED"}}
    assert acme.mapping.response.listed_fields == {"ref", "state", "at"}


@pytest.mark.parametrize(
    ("text", "partner", "field", "says"),
    [
        (EDF.replace('"48h"', '"2 weeks"'), "'edf'", "ack_within", "duration"),
        (EDF.replace('"energy_bill"', '"cooking"'), "'edf'", "categories.0", "energy_bill"),
        (EDF.replace('territory = "all"', 'territory = ["6"]'), "'edf'", "territory", ""),
        (EDF.replace('id = "edf"\n', ""), "#1", "id", "Field required"),
        (
            EDF.replace('{ kind = "kafka" }', '{ kind = "webhook", url = "x", secret_env = "S" }'),
            "'edf'",
            "transport.url",
            "pattern",
        ),
        (
            EDF.replace(
                '{ kind = "kafka" }',
                '{ kind = "webhook", url = "http://h/x", secret_env = "my secret" }',
            ),
            "'edf'",
            "transport.secret_env",
            "pattern",
        ),
        (EDF.replace('format = "edf"', 'format = "mapped-json"'), "'edf'", "(partner)", "mapping"),
        (MAPPED.replace('"last_name"', '"lastname"'), "'acme'", "mapping.referral", "who.name"),
        (MAPPED.replace('"last_name"', '"at"'), "'acme'", "mapping.referral", "unknown source"),
        (
            MAPPED.replace('state = { const = "CANCELLED" }', 'state = "summary"'),
            "'acme'",
            "mapping.cancellation",
            "state",
        ),
        (
            MAPPED.replace('"completed/resolved"', '"completed"'),
            "'acme'",
            "mapping.response",
            "outcome",
        ),
        (MAPPED.replace('"received"', '"closed"'), "'acme'", "mapping.response.statuses", "closed"),
        (
            MAPPED.replace('"completed/resolved"', '"received/resolved"'),
            "'acme'",
            "mapping.response.statuses",
            "qualifier",
        ),
        (MAPPED.replace('reference = "ref"\n', ""), "'acme'", "mapping.response.reference", ""),
        (MAPPED + 'telephone = "x"\n', "'acme'", "mapping.response.telephone", "Extra"),
    ],
)
def test_a_bad_directory_names_the_partner_and_the_field(
    text: str, partner: str, field: str, says: str
) -> None:
    with pytest.raises(DirectoryError) as caught:
        parse_directory(text, source="test.toml")
    problem = caught.value.problems[0]
    assert (problem.partner, problem.field) == (partner, field)
    assert says in problem.message
    assert f"partner {partner}: {field}" in str(caught.value)
    assert str(caught.value).startswith("partner directory test.toml: ")


def test_every_broken_partner_is_named_at_once() -> None:
    text = EDF.replace('"48h"', '"soon"') + MAPPED.replace('"1d"', '"tomorrow"')
    with pytest.raises(DirectoryError) as caught:
        parse_directory(text)
    assert [(p.partner, p.field) for p in caught.value.problems] == [
        ("'edf'", "ack_within"),
        ("'acme'", "ack_within"),
    ]


def test_a_partner_listed_twice_or_no_partner_is_refused() -> None:
    with pytest.raises(DirectoryError, match="listed twice: edf"):
        parse_directory(EDF + EDF)
    with pytest.raises(DirectoryError, match=r"\[\[partner\]\]"):
        parse_directory("# nothing\n")
    with pytest.raises(DirectoryError, match="toml"):
        parse_directory("[[partner]\n")


def test_an_unreadable_file_is_a_directory_error(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="cannot be read"):
        load_directory(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(EDF.replace("EDF", "\xc9DF").encode("latin-1"))
    with pytest.raises(ValueError, match="cannot be read"):
        load_directory(bad)


def test_one_variable_names_the_directory_for_every_service() -> None:
    assert directory_path({}) == DEFAULT_DIRECTORY_PATH
    assert directory_path({"PIMMS_PARTNER_DIRECTORY": "/etc/p.toml"}) == Path("/etc/p.toml")
    env = {"PIMMS_PARTNER_DIRECTORY": "/etc/p.toml", "PIMMS_REFERRALS_PARTNER_DIRECTORY": "/r.toml"}
    assert directory_path(env, override_env="PIMMS_REFERRALS_PARTNER_DIRECTORY") == Path("/r.toml")
    assert directory_path(env, override_env="PIMMS_GATEWAYS_PARTNER_DIRECTORY") == Path(
        "/etc/p.toml"
    )
