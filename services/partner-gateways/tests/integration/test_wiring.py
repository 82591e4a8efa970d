"""The gateway wired on faststream's in-memory TestKafkaBroker: what partners and referrals see."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH
from pimms_contracts.v1.internal import IntakeCaseOpened, IntakeDocumentsAdded
from pimms_partner_gateways.adapters.edf import ADAPTER as EDF
from pimms_partner_gateways.adapters.la_poste import ADAPTER as LA_POSTE
from pimms_partner_gateways.app import build_runtime
from pimms_partner_gateways.domain.model import Referral, dossier_from_case
from pimms_partner_gateways.settings import GatewaySettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.effects import (
    Delivered,
    Destination,
    Effect,
    Failed,
    RetryLater,
    RetryPolicy,
)
from pimms_servicekit.messages import Incoming, encode
from pimms_servicekit.testing import envelope_for, executed_statements

EDF_FEED = topics.partner_referrals("edf")
EDF_ANSWERS = topics.partner_responses("edf")
POSTE_FEED = topics.partner_referrals("la-poste")
POSTE_ANSWERS = topics.partner_responses("la-poste")
NOW = datetime(2026, 11, 27, 8, 45, tzinfo=UTC)


@dataclass
class Seen:
    """One record a partner or referrals would read."""

    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.value)

    @property
    def ce_type(self) -> str | None:
        return self.headers.get("ce_type")


@dataclass
class Platform:
    """The gateway between referrals and partners, on the in-memory broker."""

    broker: Any
    runtime: Any
    clock: ManualClock
    seen: list[Seen] = field(default_factory=list)
    _position: int = 0

    async def publish(
        self,
        topic: str,
        event: Event,
        *,
        key: str,
        correlation_id: str = "",
        causation_id: str | None = None,
    ) -> str:
        """Publish a platform event as referrals or intake would; return its ce_id."""
        envelope = envelope_for(
            event, source="urn:pimms:test", correlation_id=correlation_id or None
        ).model_copy(update={"causation_id": causation_id})
        value, headers = encode(event, envelope=envelope)
        await self.broker.publish(
            value, topic, key=key.encode(), headers={k: v.decode() for k, v in headers}
        )
        await self.drain()
        return envelope.id

    async def answer(self, topic: str, value: bytes, *, key: str) -> None:
        """A partner publishes its payload alone (no headers) on its responses topic.

        TestKafkaBroker gives every record offset 0; a partition of its own per message gives each
        answer the distinct position a real broker would (the inbox deduplicates by position).
        """
        self._position += 1
        await self.broker.publish(value, topic, key=key.encode(), partition=self._position)
        await self.drain()

    async def drain(self) -> None:
        """Let the relay publish everything, follow-ups of on_sent hooks included."""
        while await self.runtime.relay.drain():
            pass

    def of(self, topic: str, ce_type: str | None = None) -> list[Seen]:
        return [
            s for s in self.seen if s.topic == topic and (ce_type is None or s.ce_type == ce_type)
        ]

    def reports(self, kind: str) -> list[dict[str, Any]]:
        return [s.json for s in self.of(topics.PARTNER_REPORTS, f"fr.pimms.gateway.{kind}.v1")]


async def _platform(
    tmp_path: Path,
    database_url: str,
    directory: Path | None = None,
    destinations: Sequence[Destination] = (),
) -> tuple[Platform, Any]:
    settings = GatewaySettings(
        data_dir=tmp_path,
        database_url=database_url,
        partner_directory=directory or DEFAULT_DIRECTORY_PATH,
    )
    clock = ManualClock(NOW)
    runtime = build_runtime(settings, clock=clock, destinations=destinations)
    runtime.subscribe()
    runtime.use_test_broker()
    broker = runtime.broker
    seen: list[Seen] = []

    async def raw(message: Any, original: Any) -> Any:
        return message.body

    watched = [
        topics.PARTNER_REPORTS,
        EDF_FEED,
        POSTE_FEED,
        topics.dead_letters(EDF_ANSWERS),
        topics.dead_letters(POSTE_ANSWERS),
        topics.dead_letters(topics.CASES),
    ]
    for topic in watched:

        @broker.subscriber(topic, decoder=raw)
        async def record(msg: KafkaMessage) -> None:
            raw_record: Any = msg.raw_message
            key = raw_record.key
            seen.append(
                Seen(
                    topic=raw_record.topic,
                    key=key.decode() if key else None,
                    value=msg.body,
                    headers=dict(msg.headers),
                )
            )

    await runtime.prepare_database()
    return Platform(broker=broker, runtime=runtime, clock=clock, seen=seen), runtime


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Platform]:
    platform, runtime = await _platform(tmp_path, database_url)
    async with TestKafkaBroker(runtime.broker) as test_broker:
        platform.broker = test_broker
        yield platform
    await runtime.database.dispose()


async def open_case(gateway: Platform, case: IntakeCaseOpened) -> str:
    return await gateway.publish(topics.INTAKE_CASES, case, key=str(case.case_id))


async def request(gateway: Platform, event: Any, *, correlation_id: str = "") -> str:
    return await gateway.publish(
        topics.CASES, event, key=str(event.case_id), correlation_id=correlation_id
    )


def edf_answer(reference: str, **fields: Any) -> bytes:
    data = {"reference": reference, "statut": "RECU", "horodatage": "2026-11-28T10:00:00+01:00"}
    data.update(fields)
    return json.dumps(data).encode()


def poste_answer(reference: str, etat: str, body: str = "") -> bytes:
    return (
        f'<reponse xmlns="urn:laposte:mediation:pimms:1" reference="{reference}" etat="{etat}" '
        f'horodatage="2026-11-28T10:00:00+01:00">{body}</reponse>'
    ).encode()


# --- referrals go out ---


async def test_a_referral_reaches_edf_in_its_format_and_referrals_hears_it_was_delivered(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened()
    requested = referral_requested(case, "edf")
    await open_case(gateway, case)
    cause = await request(gateway, requested, correlation_id="corr-1")

    [sent] = gateway.of(EDF_FEED)
    referral_id = str(requested.referral_id)
    assert sent.key == referral_id
    assert sent.value == EDF.to_referral(
        dossier_from_case(case),
        Referral(referral_id=referral_id, case_id=str(case.case_id), partner_id="edf"),
    )
    assert sent.json["reference"] == referral_id
    assert sent.json["client"]["nom"] == "DUPONT"
    assert not any(name.startswith("ce_") for name in sent.headers)  # the partner's payload alone

    [delivered] = gateway.of(topics.PARTNER_REPORTS)
    assert delivered.ce_type == "fr.pimms.gateway.delivered.v1"
    assert delivered.key == str(case.case_id)
    assert delivered.json == {
        "case_id": str(case.case_id),
        "referral_id": referral_id,
        "partner_id": "edf",
        "kind": "referral",
        "transport": "kafka",
        "delivered_at": "2026-11-27T08:45:00Z",
    }
    assert delivered.headers["ce_correlationid"] == "corr-1"
    assert delivered.headers["ce_causationid"] == cause
    assert delivered.headers["ce_source"] == "urn:pimms:partner-gateways"


async def test_a_referral_that_arrives_before_its_dossier_waits_for_it(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened()
    requested = referral_requested(case, "edf")
    await request(gateway, requested)
    assert gateway.of(EDF_FEED) == []
    assert gateway.of(topics.PARTNER_REPORTS) == []

    await open_case(gateway, case)
    [sent] = gateway.of(EDF_FEED)
    assert sent.key == str(requested.referral_id)
    assert sent.json["dossierPimms"] == case.case_reference
    assert [r["kind"] for r in gateway.reports("delivered")] == ["referral"]


async def test_a_replayed_request_sends_nothing_more(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened()
    requested = referral_requested(case, "edf")
    await open_case(gateway, case)
    await request(gateway, requested)
    await request(gateway, requested)  # the same referral again, under a new ce_id
    await open_case(gateway, case)  # and its case again
    assert len(gateway.of(EDF_FEED)) == 1
    assert len(gateway.reports("delivered")) == 1


async def test_documents_added_before_the_referral_are_taken_into_account(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened()
    await open_case(gateway, case)
    added = IntakeDocumentsAdded(
        case_id=case.case_id,
        case_reference=case.case_reference,
        added=("tax_notices",),
        documents=("id_card", "last_bill", "tax_notices"),
        added_at=NOW,
    )
    await gateway.publish(topics.INTAKE_CASES, added, key=str(case.case_id))
    async with gateway.runtime.database.transaction() as session:
        stored = await gateway.runtime.pipeline.repositories(session).dossier(str(case.case_id))
    assert stored is not None
    assert stored.documents == ("id_card", "last_bill", "tax_notices")


@pytest.mark.parametrize(
    ("partner_id", "reason"),
    [
        ("acme", "unknown_partner"),
        ("edf", "unsupported_category"),  # EDF's format has no motif for naturalisation
    ],
)
async def test_a_partner_the_gateway_cannot_reach_is_reported_as_a_failed_delivery(
    gateway: Platform,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    partner_id: str,
    reason: str,
) -> None:
    case = case_opened(category="naturalisation")
    requested = referral_requested(case, partner_id)
    await open_case(gateway, case)
    await request(gateway, requested)
    [failed] = gateway.of(topics.PARTNER_REPORTS)
    assert failed.ce_type == "fr.pimms.gateway.delivery_failed.v1"
    assert failed.key == str(case.case_id)
    assert failed.json == {
        "case_id": str(case.case_id),
        "referral_id": str(requested.referral_id),
        "partner_id": partner_id,
        "reason": reason,
        "failed_at": "2026-11-27T08:45:00Z",
    }
    assert gateway.of(EDF_FEED) == gateway.of(POSTE_FEED) == []
    await request(gateway, requested)  # replayed: reported once
    assert len(gateway.of(topics.PARTNER_REPORTS)) == 1


async def test_a_format_without_an_adapter_is_no_adapter_even_on_kafka(
    tmp_path: Path,
    database_url: str,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    directory = tmp_path / "directory.toml"
    directory.write_text(
        """
[[partner]]
id = "orange"
operator = "Orange"
categories = ["telecom"]
territory = "all"
format = "orange-json"
ack_within = "48h"
resolve_within = "15d"
transport = { kind = "kafka" }
""",
        encoding="utf-8",
    )
    platform, runtime = await _platform(tmp_path, database_url, directory)
    assert topics.partner_responses("orange") not in runtime.pipeline.topics
    async with TestKafkaBroker(runtime.broker) as test_broker:
        platform.broker = test_broker
        case = case_opened(category="telecom")
        await open_case(platform, case)
        await request(platform, referral_requested(case, "orange"))
    await runtime.database.dispose()
    [failed] = platform.reports("delivery_failed")
    assert failed["reason"] == "no_adapter"


async def test_other_lifecycle_events_are_ignored(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened]
) -> None:
    from pimms_contracts.v1.lifecycle import CaseOpened

    case = case_opened()
    opened = CaseOpened(
        case_id=case.case_id,
        case_reference=case.case_reference,
        site_id=case.site_id,
        occurred_at=NOW,
        category="energy_bill",
        urgency="high",
    )
    await gateway.publish(topics.CASES, opened, key=str(case.case_id))
    assert gateway.seen == []


# --- answers come back ---


async def sent_to_edf(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> tuple[IntakeCaseOpened, str]:
    case = case_opened()
    requested = referral_requested(case, "edf")
    await open_case(gateway, case)
    await request(gateway, requested, correlation_id=f"corr-{case.case_id}")
    return case, str(requested.referral_id)


async def test_an_edf_answer_becomes_a_status_report_for_referrals(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case, referral_id = await sent_to_edf(gateway, case_opened, referral_requested)
    gateway.clock.advance(timedelta(hours=1))
    value = edf_answer(referral_id, statut="CLOS", resultat="SOLUTION_TROUVEE", commentaire="ok")
    await gateway.answer(EDF_ANSWERS, value, key=referral_id)

    [report] = gateway.of(topics.PARTNER_REPORTS, "fr.pimms.gateway.status_reported.v1")
    assert report.key == str(case.case_id)
    assert report.headers["ce_correlationid"] == f"corr-{case.case_id}"
    data = report.json
    source = data.pop("source")
    assert data == {
        "case_id": str(case.case_id),
        "referral_id": referral_id,
        "partner_id": "edf",
        "status": "completed",
        "outcome": "resolved",
        "reason": None,
        "missing_documents": [],
        "reported_at": "2026-11-28T10:00:00+01:00",
        "received_at": "2026-11-27T09:45:00Z",
        "report_id": data["report_id"],
    }
    # No Kafka coordinates or partner bytes cross the boundary: the gateway keeps them itself.
    assert source is None
    assert uuid.UUID(data["report_id"])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"<reponse/>", "not_json"),
        (b'{"statut": "RECU"}', "schema_invalid"),
        (b'"RECU"', "schema_invalid"),
        ("CLOS", "schema_invalid"),
        ("PERDU", "unknown_status"),
        ("CLOS/PEUT_ETRE", "unknown_outcome"),
        ("unknown-reference", "unknown_reference"),
    ],
)
async def test_a_bad_edf_answer_goes_to_its_dead_letters_and_the_next_one_still_passes(
    gateway: Platform,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    value: Any,
    reason: str,
) -> None:
    _, referral_id = await sent_to_edf(gateway, case_opened, referral_requested)
    if value == "unknown-reference":
        value = edf_answer(str(uuid4()))
    elif isinstance(value, str):
        statut, _, resultat = value.partition("/")
        value = edf_answer(
            referral_id, statut=statut, **({"resultat": resultat} if resultat else {})
        )
    await gateway.answer(EDF_ANSWERS, value, key=referral_id)

    [dead] = gateway.of(topics.dead_letters(EDF_ANSWERS))
    assert dead.value == value  # the partner's bytes, untouched
    assert dead.key == referral_id
    assert dead.headers["pimms_dlt_reason"] == reason
    assert dead.headers["pimms_dlt_service"] == "partner-gateways"
    assert dead.headers["pimms_dlt_original_topic"] == EDF_ANSWERS
    assert dead.headers["pimms_dlt_error"]
    assert gateway.reports("status_reported") == []  # nothing applied

    await gateway.answer(
        EDF_ANSWERS, edf_answer(referral_id, statut="PRIS_EN_CHARGE"), key=referral_id
    )
    assert [r["status"] for r in gateway.reports("status_reported")] == ["accepted"]


async def test_a_partner_cannot_report_on_another_partners_referral(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    _, edf_referral = await sent_to_edf(gateway, case_opened, referral_requested)
    await gateway.answer(POSTE_ANSWERS, poste_answer(edf_referral, "recue"), key=edf_referral)
    [dead] = gateway.of(topics.dead_letters(POSTE_ANSWERS))
    assert dead.headers["pimms_dlt_reason"] == "unknown_reference"
    assert "la-poste" in dead.headers["pimms_dlt_error"]
    assert gateway.reports("status_reported") == []


async def test_a_referral_still_waiting_for_its_dossier_cannot_be_answered(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened()
    requested = referral_requested(case, "edf")
    await request(gateway, requested)
    referral_id = str(requested.referral_id)
    await gateway.answer(EDF_ANSWERS, edf_answer(referral_id), key=referral_id)
    [dead] = gateway.of(topics.dead_letters(EDF_ANSWERS))
    assert dead.headers["pimms_dlt_reason"] == "unknown_reference"


async def test_la_poste_round_trip(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened(
        category="postal_service", summary='Colis <urgent> & "fragile"', sms=False, phone=None
    )
    requested = referral_requested(case, "la-poste")
    await open_case(gateway, case)
    await request(gateway, requested)
    referral_id = str(requested.referral_id)

    [sent] = gateway.of(POSTE_FEED)
    assert sent.key == referral_id
    assert sent.value == LA_POSTE.to_referral(
        dossier_from_case(case),
        Referral(referral_id=referral_id, case_id=str(case.case_id), partner_id="la-poste"),
    )
    assert b'Colis &lt;urgent&gt; &amp; "fragile"' in sent.value
    assert b"<telephone>" not in sent.value
    assert gateway.of(EDF_FEED) == []
    assert [r["partner_id"] for r in gateway.reports("delivered")] == ["la-poste"]

    await gateway.answer(POSTE_ANSWERS, poste_answer(referral_id, "acceptee"), key=referral_id)
    await gateway.answer(
        POSTE_ANSWERS,
        poste_answer(referral_id, "rejetee", "<motif>doublon</motif>"),
        key=referral_id,
    )
    reports = gateway.reports("status_reported")
    assert [(r["status"], r["reason"]) for r in reports] == [
        ("accepted", None),
        ("rejected", "duplicate"),
    ]
    assert {r["partner_id"] for r in reports} == {"la-poste"}


async def test_la_poste_xml_attacks_go_to_its_dead_letters(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened(category="postal_service")
    requested = referral_requested(case, "la-poste")
    await open_case(gateway, case)
    await request(gateway, requested)
    referral_id = str(requested.referral_id)
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f'<reponse xmlns="urn:laposte:mediation:pimms:1" reference="{referral_id}" etat="recue"'
        ' horodatage="2026-11-28T10:00:00+01:00"><commentaire>&x;</commentaire></reponse>'
    ).encode()
    await gateway.answer(POSTE_ANSWERS, xxe, key=referral_id)
    await gateway.answer(POSTE_ANSWERS, b"<reponse", key=referral_id)
    await gateway.answer(POSTE_ANSWERS, poste_answer(referral_id, "traitee"), key=referral_id)
    reasons = [
        d.headers["pimms_dlt_reason"] for d in gateway.of(topics.dead_letters(POSTE_ANSWERS))
    ]
    assert reasons == ["forbidden_xml", "malformed_xml", "schema_invalid"]
    assert gateway.reports("status_reported") == []


# --- cancellations ---


async def test_a_cancelled_referral_is_withdrawn_from_edf(
    gateway: Platform,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    referral_cancelled: Any,
) -> None:
    case, referral_id = await sent_to_edf(gateway, case_opened, referral_requested)
    await request(gateway, referral_cancelled(case, "edf", referral_id))
    _, cancellation = gateway.of(EDF_FEED)
    assert cancellation.key == referral_id
    assert cancellation.json == {
        "reference": referral_id,
        "statut": "ANNULE",
        "horodatage": "2026-11-27T09:45:00+01:00",
    }
    assert [r["kind"] for r in gateway.reports("delivered")] == ["referral", "cancellation"]

    await request(gateway, referral_cancelled(case, "edf", referral_id))  # replayed
    assert len(gateway.of(EDF_FEED)) == 2

    # EDF may still answer; referrals decides what that means for a cancelled referral
    await gateway.answer(EDF_ANSWERS, edf_answer(referral_id, statut="EN_COURS"), key=referral_id)
    assert [r["status"] for r in gateway.reports("status_reported")] == ["in_progress"]


async def test_a_cancelled_referral_is_withdrawn_from_la_poste(
    gateway: Platform,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    referral_cancelled: Any,
) -> None:
    case = case_opened(category="postal_service")
    requested = referral_requested(case, "la-poste")
    referral_id = str(requested.referral_id)
    await open_case(gateway, case)
    await request(gateway, requested)
    await request(gateway, referral_cancelled(case, "la-poste", referral_id))
    _, cancellation = gateway.of(POSTE_FEED)
    assert cancellation.key == referral_id
    assert (
        cancellation.value
        == (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<annulation xmlns="urn:laposte:mediation:pimms:1" reference="{referral_id}"'
            ' horodatage="2026-11-27T09:45:00+01:00"/>'
        ).encode()
    )
    assert [r["kind"] for r in gateway.reports("delivered")] == ["referral", "cancellation"]


async def test_a_referral_cancelled_while_waiting_for_its_dossier_is_never_sent(
    gateway: Platform,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    referral_cancelled: Any,
) -> None:
    case = case_opened()
    cancelled = referral_requested(case, "edf")
    kept = referral_requested(case, "edf")
    await request(gateway, cancelled)
    await request(gateway, kept)
    await request(gateway, referral_cancelled(case, "edf", str(cancelled.referral_id)))
    assert gateway.seen == []

    await open_case(gateway, case)
    [sent] = gateway.of(EDF_FEED)
    assert sent.key == str(kept.referral_id)
    assert [r["referral_id"] for r in gateway.reports("delivered")] == [str(kept.referral_id)]


async def test_a_referral_that_could_not_be_delivered_is_cancelled_silently(
    gateway: Platform,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    referral_cancelled: Any,
) -> None:
    case = case_opened(category="naturalisation")
    requested = referral_requested(case, "acme")  # no such partner: delivery failed
    await open_case(gateway, case)
    await request(gateway, requested)
    await request(gateway, referral_cancelled(case, "acme", str(requested.referral_id)))
    assert [s.ce_type for s in gateway.seen] == ["fr.pimms.gateway.delivery_failed.v1"]


# --- refused reports: the gateway dead-letters its partner's original record ---


def refused(case: IntakeCaseOpened, referral_id: str, *, reported: str, current: str) -> Any:
    from pimms_contracts.v1.internal import PartnerReportRefused

    return PartnerReportRefused(
        case_id=case.case_id,
        case_reference=case.case_reference,
        site_id=case.site_id,
        referral_id=UUID(referral_id),
        partner_id="edf",
        reported_status=reported,  # type: ignore[arg-type]
        current_status=current,
        occurred_at=NOW,
    )


async def test_a_refused_report_sends_the_partners_original_record_to_its_dead_letters(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case, referral_id = await sent_to_edf(gateway, case_opened, referral_requested)
    await gateway.answer(
        EDF_ANSWERS, edf_answer(referral_id, statut="PRIS_EN_CHARGE"), key=referral_id
    )
    backwards = edf_answer(referral_id, statut="RECU", commentaire="déjà reçu")
    await gateway.answer(EDF_ANSWERS, backwards, key=referral_id)
    _, report = gateway.of(topics.PARTNER_REPORTS, "fr.pimms.gateway.status_reported.v1")
    assert gateway.of(topics.dead_letters(EDF_ANSWERS)) == []  # nothing until referrals refuses

    # referrals refuses the second report: its alert is caused by that report
    alert = refused(case, referral_id, reported="received", current="accepted")
    cause = report.headers["ce_id"]
    await gateway.publish(topics.REFERRAL_ALERTS, alert, key=str(case.case_id), causation_id=cause)

    [dead] = gateway.of(topics.dead_letters(EDF_ANSWERS))
    assert dead.value == backwards  # the partner's bytes, untouched
    assert dead.key == referral_id
    assert dead.headers["pimms_dlt_reason"] == "impossible_transition"
    assert dead.headers["pimms_dlt_error"] == (
        f"edf reported received but referral {referral_id} is accepted"
    )
    assert dead.headers["pimms_dlt_service"] == "partner-gateways"
    assert dead.headers["pimms_dlt_original_topic"] == EDF_ANSWERS
    assert dead.headers["pimms_dlt_original_partition"] == str(gateway._position)
    assert dead.headers["pimms_dlt_original_offset"] == "0"
    assert not any(name.startswith("ce_") for name in dead.headers)

    # the same refusal again (a new alert about the same report), or about an unknown report
    await gateway.publish(topics.REFERRAL_ALERTS, alert, key=str(case.case_id), causation_id=cause)
    await gateway.publish(
        topics.REFERRAL_ALERTS, alert, key=str(case.case_id), causation_id=str(uuid4())
    )
    await gateway.publish(topics.REFERRAL_ALERTS, alert, key=str(case.case_id))
    assert len(gateway.of(topics.dead_letters(EDF_ANSWERS))) == 1


# --- partners reached through a dispatcher (file drop, webhook) ---


@dataclass
class FakeWebhook:
    """A partner's endpoint: takes what it is given, or refuses everything."""

    name: str = "partner:edf-web"
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=2))
    refuse: str | None = None
    received: list[Effect] = field(default_factory=list)

    async def deliver(self, effect: Effect) -> Delivered | RetryLater | Failed:
        if self.refuse is not None:
            return Failed(reason=self.refuse)
        self.received.append(effect)
        return Delivered(receipt=f"hook-{len(self.received)}")


WEBHOOK_DIRECTORY = """
[[partner]]
id = "edf-web"
operator = "EDF (webhook)"
categories = ["energy_bill"]
territory = "all"
format = "edf"
ack_within = "48h"
resolve_within = "15d"
transport = { kind = "webhook", url = "https://partner.example/pimms", secret_env = "EDF_SECRET" }
"""


@pytest.fixture
async def webhook_gateway(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Platform, FakeWebhook]]:
    directory = tmp_path / "directory.toml"
    directory.write_text(WEBHOOK_DIRECTORY, encoding="utf-8")
    webhook = FakeWebhook()
    platform, runtime = await _platform(tmp_path, database_url, directory, [webhook])
    async with TestKafkaBroker(runtime.broker) as test_broker:
        platform.broker = test_broker
        yield platform, webhook
    await runtime.database.dispose()


async def test_a_webhook_partner_gets_the_referral_from_its_dispatcher_after_the_commit(
    webhook_gateway: tuple[Platform, FakeWebhook],
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    referral_cancelled: Any,
) -> None:
    gateway, webhook = webhook_gateway
    case = case_opened()
    requested = referral_requested(case, "edf-web")
    referral_id = str(requested.referral_id)
    await open_case(gateway, case)
    cause = await request(gateway, requested, correlation_id="corr-web")
    assert webhook.received == []  # nothing leaves inside the transaction
    assert gateway.reports("delivered") == []

    assert await gateway.runtime.drain_effects() == 1
    await gateway.drain()
    [effect] = webhook.received
    assert effect.payload == EDF.to_referral(
        dossier_from_case(case),
        Referral(referral_id=referral_id, case_id=str(case.case_id), partner_id="edf-web"),
    )
    assert effect.idempotency_key == f"{referral_id}:referral"
    [delivered] = gateway.of(topics.PARTNER_REPORTS, "fr.pimms.gateway.delivered.v1")
    assert delivered.json["transport"] == "webhook"
    assert delivered.json["kind"] == "referral"
    assert delivered.headers["ce_correlationid"] == "corr-web"
    assert delivered.headers["ce_causationid"] == cause

    await request(gateway, referral_cancelled(case, "edf-web", referral_id))
    await gateway.runtime.drain_effects()
    await gateway.drain()
    assert [e.idempotency_key for e in webhook.received][1:] == [f"{referral_id}:cancellation"]
    assert [r["kind"] for r in gateway.reports("delivered")] == ["referral", "cancellation"]


async def test_a_referral_its_dispatcher_gives_up_on_is_a_failed_delivery(
    webhook_gateway: tuple[Platform, FakeWebhook],
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    gateway, webhook = webhook_gateway
    webhook.refuse = "http_403"
    case = case_opened()
    requested = referral_requested(case, "edf-web")
    await open_case(gateway, case)
    await request(gateway, requested)
    await gateway.runtime.drain_effects()
    await gateway.drain()
    assert gateway.reports("delivered") == []
    [failed] = gateway.reports("delivery_failed")
    assert failed == {
        "case_id": str(case.case_id),
        "referral_id": str(requested.referral_id),
        "partner_id": "edf-web",
        "reason": "http_403",
        "failed_at": "2026-11-27T08:45:00Z",
    }
    await request(gateway, requested)  # replayed: nothing more
    assert await gateway.runtime.drain_effects() == 0
    await gateway.drain()
    assert len(gateway.reports("delivery_failed")) == 1


# --- one batch: shared reads, bulk writes ---


def _incoming(topic: str, event: Event, *, offset: int) -> Incoming:
    envelope = envelope_for(event, source="urn:pimms:test")
    value, headers = encode(event, envelope=envelope)
    key = str(getattr(event, "case_id", "")).encode()
    return Incoming(
        topic=topic,
        partition=0,
        offset=offset,
        key=key,
        value=value,
        headers=tuple(headers),
        timestamp_ms=0,
    )


async def _statements_for_a_batch(
    gateway: Platform,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    *,
    n: int,
    waiting: int = 0,
) -> list[str]:
    """The SQL statements of one batch: `waiting` referrals before their case, then every case,
    then the other referrals; every referral must reach EDF."""
    cases = [case_opened() for _ in range(n)]
    requests = [referral_requested(case, "edf") for case in cases]
    batch = [
        *(_incoming(topics.CASES, r, offset=i) for i, r in enumerate(requests[:waiting])),
        *(_incoming(topics.INTAKE_CASES, c, offset=i) for i, c in enumerate(cases)),
        *(_incoming(topics.CASES, r, offset=n + i) for i, r in enumerate(requests[waiting:])),
    ]
    with executed_statements(gateway.runtime.database.engine) as executed:
        await gateway.runtime.pipeline.process_incoming(batch)
    await gateway.drain()
    sent = {s.key for s in gateway.of(EDF_FEED)}
    assert {str(r.referral_id) for r in requests} <= sent
    return [f"{s.split(maxsplit=1)[0].upper()} {_table_of(s)}" for s in executed]


def _table_of(statement: str) -> str:
    for table in ("deliveries", "dossiers", "partner_reports", "parked", "inbox", "outbox"):
        if f'"{table}"' in statement or f" {table} " in f"{statement} ":
            return table
    return "-"


async def test_a_batch_costs_the_same_statements_whatever_its_size(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    small = await _statements_for_a_batch(gateway, case_opened, referral_requested, n=2)
    large = await _statements_for_a_batch(gateway, case_opened, referral_requested, n=40)
    assert sorted(large) == sorted(small)
    assert large.count("SELECT dossiers") == 1
    assert large.count("INSERT deliveries") == 1


async def test_referrals_waiting_for_their_dossier_cost_the_gateway_no_statement_each(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    def ours(statements: list[str]) -> list[str]:
        return sorted(s for s in statements if s.endswith(("deliveries", "dossiers")))

    small = await _statements_for_a_batch(gateway, case_opened, referral_requested, n=2, waiting=1)
    large = await _statements_for_a_batch(
        gateway, case_opened, referral_requested, n=40, waiting=20
    )
    assert ours(large) == ours(small)


async def test_a_referral_whose_dossier_never_comes_fails_after_the_bound_and_is_dead_lettered(
    gateway: Platform, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    """Parked 24 h (the default bound) for a dossier that never came: housekeeping dead-letters
    the request (`parked_too_long`) and the delivery fails, which tells the mediator (referrals
    turns it into `referral.delivery_failed`, a mediator notice)."""
    case = case_opened()
    first = referral_requested(case, "edf")
    second = referral_requested(case, "la-poste")
    await request(gateway, first)
    await request(gateway, second)
    housekeeper = gateway.runtime.housekeeper

    gateway.clock.advance(timedelta(hours=23))
    assert await housekeeper.expire_parked() == 0  # not yet
    await gateway.drain()
    assert gateway.of(topics.PARTNER_REPORTS) == []

    gateway.clock.advance(timedelta(hours=2))
    assert await housekeeper.expire_parked() == 2
    await gateway.drain()
    failed = gateway.reports("delivery_failed")
    assert sorted((f["referral_id"], f["partner_id"], f["reason"]) for f in failed) == sorted(
        [
            (str(first.referral_id), "edf", "parked_too_long"),
            (str(second.referral_id), "la-poste", "parked_too_long"),
        ]
    )
    dead = gateway.of(topics.dead_letters(topics.CASES))
    assert len(dead) == 2
    assert {d.headers["pimms_dlt_reason"] for d in dead} == {"parked_too_long"}
    assert all(f.key == str(case.case_id) for f in gateway.of(topics.PARTNER_REPORTS))

    assert await housekeeper.expire_parked() == 0  # nothing left: said once
    await open_case(gateway, case)  # the dossier comes after all: nothing is sent any more
    assert gateway.of(EDF_FEED) == gateway.of(POSTE_FEED) == []
    assert len(gateway.reports("delivery_failed")) == 2
