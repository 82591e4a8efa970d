"""The contracts: committed JSON Schemas, the envelope, the partner directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pimms_contracts import topics
from pimms_contracts.envelope import Envelope, EnvelopeError
from pimms_contracts.examples import need_submitted
from pimms_contracts.partners import KafkaTransport, load_directory
from pimms_contracts.registry import ALL_EVENTS, EVENTS_BY_TYPE
from pimms_contracts.schemas import DEFAULT_DIR, differences, export
from pimms_contracts.v1.frontoffice import NeedSubmitted


def test_committed_schemas_match_the_models() -> None:
    problems = differences(DEFAULT_DIR)
    assert problems == [], "contracts changed: " + "; ".join(problems)


def test_the_check_catches_a_drift(tmp_path: Path) -> None:
    export(tmp_path)
    path = tmp_path / "fr.pimms.need.accepted.v1.json"
    schema = json.loads(path.read_text())
    del schema["properties"]["case_reference"]
    path.write_text(json.dumps(schema))
    (tmp_path / "fr.pimms.gone.v1.json").write_text("{}")
    problems = differences(tmp_path)
    assert any("fr.pimms.need.accepted.v1.json: differs" in p for p in problems)
    assert any("fr.pimms.gone.v1.json" in p for p in problems)


def test_every_event_type_carries_its_major_version() -> None:
    for event in ALL_EVENTS:
        assert event.ce_type.startswith("fr.pimms.")
        assert event.ce_type.rsplit(".", 1)[1].startswith("v")
    assert len(EVENTS_BY_TYPE) == len(ALL_EVENTS)


def test_models_are_frozen_and_reject_unknown_fields() -> None:
    need = NeedSubmitted.model_validate_json(json.dumps(need_submitted()))
    with pytest.raises(Exception, match="frozen"):
        need.site_id = "other"  # type: ignore[misc]
    with pytest.raises(Exception, match="Extra inputs"):
        NeedSubmitted.model_validate_json(json.dumps({**need_submitted(), "extra": 1}))


def test_envelope_round_trip_through_headers() -> None:
    envelope = Envelope(
        id="e1",
        source="urn:pimms:intake",
        type="fr.pimms.need.accepted.v1",
        time=datetime(2026, 11, 27, 8, 30, tzinfo=UTC),
        correlation_id="c1",
        causation_id="e0",
    )
    headers = dict(envelope.to_headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_correlationid"] == b"c1"
    assert headers["ce_causationid"] == b"e0"
    assert headers["content-type"] == b"application/json"
    assert Envelope.from_headers(envelope.to_headers()) == envelope


def test_envelope_names_what_is_missing() -> None:
    with pytest.raises(EnvelopeError, match="ce_type, ce_time"):
        Envelope.from_headers([("ce_id", b"x"), ("ce_source", b"s")])
    with pytest.raises(EnvelopeError, match="time"):
        Envelope.from_headers(
            [("ce_id", b"x"), ("ce_source", b"s"), ("ce_type", b"t"), ("ce_time", b"noon")]
        )


def test_the_default_directory_is_the_one_of_the_specs() -> None:
    directory = load_directory()
    assert [p.id for p in directory.partners] == [
        "edf",
        "la-poste",
        "eau-grand-lyon",
        "sncf",
        "prefecture-69",
        "orange",
        "banque-postale",
    ]
    edf = directory.get("edf")
    assert edf is not None
    assert isinstance(edf.transport, KafkaTransport)
    assert edf.transport.referrals_topic == "pimms.partner.edf.referrals.v1"
    assert edf.ack_within.total_seconds() == 48 * 3600
    assert [p.id for p in directory.serving(category="water_bill", departement="69")] == [
        "eau-grand-lyon"
    ]
    assert directory.serving(category="water_bill", departement="75") == []
    assert directory.kafka_partner_ids() == ("edf", "la-poste", "prefecture-69", "orange")


def test_a_broken_directory_is_refused_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text(
        '[[partner]]\nid = "x1"\noperator = "X"\ncategories = ["cooking"]\nterritory = "all"\n'
        'format = "x"\nack_within = "2 weeks"\nresolve_within = "1d"\n'
        'transport = { kind = "kafka" }\n'
    )
    with pytest.raises(ValueError, match="categories") as error:
        load_directory(path)
    assert "ack_within" in str(error.value)


def test_platform_topics_include_dead_letters_of_what_is_consumed() -> None:
    names = topics.platform_topics(("edf",))
    assert "pimms.intake.needs.v1.dlt" in names
    assert "pimms.partner.edf.responses.v1.dlt" in names
    assert "pimms.partner.edf.referrals.v1" in names
