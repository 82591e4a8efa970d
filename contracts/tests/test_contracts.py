"""The contracts: committed JSON Schemas, the envelope, the partner directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pimms_contracts import topics
from pimms_contracts.envelope import Envelope, EnvelopeError
from pimms_contracts.examples import DELETE, need_submitted
from pimms_contracts.partners import KafkaTransport, load_directory
from pimms_contracts.registry import ALL_EVENTS, EVENTS_BY_TYPE
from pimms_contracts.schemas import DEFAULT_DIR, differences, export
from pimms_contracts.v1.frontoffice import NeedAcknowledged, NeedSubmitted, ReferralAssessed
from pimms_contracts.v1.lifecycle import (
    REFERRAL_EVENT_BY_STATUS,
    ReferralDocumentsForwarded,
    ReferralEscalated,
    ReferralOnHold,
    ReferralReminded,
)
from pydantic import ValidationError


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


def assessment(**changes: object) -> dict[str, object]:
    """The mediator's assessment as specs/front-office.md shows it."""
    data: dict[str, object] = {
        "submission_id": "0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11",
        "referral_id": "5f0c2a7e-1d2b-4c3d-8e9f-0a1b2c3d4e5f",
        "mediator_id": "m-042",
        "rating": 4,
        "tags": ["fast", "clear_answer"],
        "comment": "Réponse rapide et claire.",
        "assessed_at": "2026-12-20T10:00:00+01:00",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not DELETE}


def test_the_assessment_is_the_one_of_the_spec() -> None:
    assessed = ReferralAssessed.model_validate_json(json.dumps(assessment()))
    assert EVENTS_BY_TYPE["fr.pimms.referral.assessed.v1"] is ReferralAssessed
    assert (assessed.rating, assessed.tags) == (4, ("fast", "clear_answer"))
    without_comment = ReferralAssessed.model_validate_json(
        json.dumps(assessment(comment=DELETE, tags=[]))
    )
    assert without_comment.comment is None
    assert without_comment.tags == ()


@pytest.mark.parametrize(
    ("changes", "error_type"),
    [
        ({"rating": 0}, "greater_than_equal"),
        ({"rating": 6}, "less_than_equal"),
        ({"rating": "4"}, "int_type"),
        ({"rating": 4.5}, "int_type"),
        ({"tags": ["quick"]}, "literal_error"),
        ({"tags": ["fast", "fast"]}, "repeated_value"),
        ({"comment": "x" * 1001}, "string_too_long"),
        ({"note": "typo"}, "extra_forbidden"),
        ({"tags": DELETE}, "missing"),
        ({"assessed_at": "2026-12-20T10:00:00"}, "timezone_aware"),
    ],
)
def test_the_assessment_is_strict(changes: dict[str, object], error_type: str) -> None:
    with pytest.raises(ValidationError) as error:
        ReferralAssessed.model_validate_json(json.dumps(assessment(**changes)))
    assert [e["type"] for e in error.value.errors()] == [error_type]


def test_an_assessment_is_acknowledged_as_such() -> None:
    assert "assessed" in str(
        NeedAcknowledged.model_json_schema()["properties"]["acknowledged"]["enum"]
    )


def test_sla_steps_and_forwarding_are_lifecycle_events_without_personal_data() -> None:
    about = {
        "case_id": "9e1c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11",
        "case_reference": "LYON8-2026-000123",
        "site_id": "lyon-8",
        "occurred_at": "2026-11-29T09:30:00+01:00",
        "referral_id": "5f0c2a7e-1d2b-4c3d-8e9f-0a1b2c3d4e5f",
        "partner_id": "edf",
    }
    due = {"status": "transmitted", "due_at": about["occurred_at"]}
    reminded = ReferralReminded.model_validate_json(json.dumps({**about, **due, "reminder": 1}))
    assert reminded.reason == "no_acknowledgement"
    escalated = ReferralEscalated.model_validate_json(json.dumps({**about, **due}))
    assert escalated.ce_type == "fr.pimms.referral.escalated.v1"
    forwarded = ReferralDocumentsForwarded.model_validate_json(
        json.dumps({**about, "documents": ["tax_notices"], "missing_documents": []})
    )
    assert forwarded.status == "on_hold"
    with pytest.raises(ValidationError):
        ReferralDocumentsForwarded.model_validate_json(json.dumps({**about, "documents": []}))
    with pytest.raises(ValidationError):
        ReferralReminded.model_validate_json(
            json.dumps({**about, "status": "transmitted", "reminder": 0, "due_at": "x"})
        )
    for event in (ReferralReminded, ReferralEscalated, ReferralDocumentsForwarded):
        assert event in ALL_EVENTS
        assert event.ce_type not in {e.ce_type for e in REFERRAL_EVENT_BY_STATUS.values()}
    held = ReferralOnHold.model_validate_json(
        json.dumps(
            {
                **about,
                "partner_id": "prefecture-69",
                "reason": "missing_documents",
                "missing_documents": ["tax_notices", "language_diploma"],
            }
        )
    )
    assert held.missing_documents == ("tax_notices", "language_diploma")
