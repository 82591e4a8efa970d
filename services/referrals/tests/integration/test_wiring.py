"""Referrals wired on faststream's in-memory TestKafkaBroker: what intake, partners, the mediator
and anyone reading pimms.cases.v1 see."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_referrals.app import build_runtime
from pimms_referrals.settings import ReferralsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.messages import encode
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.testing import envelope_for

EDF_DLT = topics.dead_letters(topics.partner_responses("edf"))


@dataclass
class Seen:
    """A message published by referrals."""

    key: str | None
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ce_type(self) -> str:
        return self.headers.get("ce_type", "")


@dataclass
class Platform:
    """Referrals between an in-memory broker and what the other services would read."""

    broker: Any
    runtime: ServiceRuntime
    seen: dict[str, list[Seen]] = field(default_factory=dict)

    async def send(self, topic: str, event: Any, *, ce_id: str | None = None) -> None:
        envelope = envelope_for(event, source="urn:pimms:test", correlation_id="corr-1")
        if ce_id is not None:
            envelope = envelope.model_copy(update={"id": ce_id})
        value, headers = encode(event, envelope=envelope)
        key = str(event.case_id).encode()
        await self.broker.publish(
            value, topic, key=key, headers={k: v.decode() for k, v in headers}
        )
        await self.runtime.relay.drain()

    async def intake(self, event: Event, *, ce_id: str | None = None) -> None:
        await self.send(topics.INTAKE_CASES, event, ce_id=ce_id)

    async def gateway(self, event: Event, *, ce_id: str | None = None) -> None:
        await self.send(topics.PARTNER_REPORTS, event, ce_id=ce_id)

    def on(self, topic: str) -> list[Seen]:
        return self.seen.get(topic, [])

    def lifecycle(self, case_id: Any) -> list[tuple[str, dict[str, Any]]]:
        """(ce_type without prefix and version, data) on pimms.cases.v1 for one case."""
        return [
            (s.ce_type.removeprefix("fr.pimms.").removesuffix(".v1"), s.json)
            for s in self.on(topics.CASES)
            if s.key == str(case_id)
        ]

    def kinds(self, case_id: Any) -> list[str]:
        return [kind for kind, _ in self.lifecycle(case_id)]

    def referral_id(self, case_id: Any, partner_id: str = "edf") -> str:
        [requested] = [
            data
            for kind, data in self.lifecycle(case_id)
            if kind == "referral.requested" and data["partner_id"] == partner_id
        ]
        return str(requested["referral_id"])


@pytest.fixture
async def platform(tmp_path: Path, database_url: str) -> AsyncIterator[Platform]:
    settings = ReferralsSettings(data_dir=tmp_path, database_url=database_url)
    runtime = build_runtime(settings, clock=ManualClock())
    runtime.subscribe()
    runtime.use_test_broker()
    broker = runtime.broker
    holder: dict[str, Platform] = {}

    async def raw(message: Any, original: Any) -> Any:
        return message.body

    def watch(topic: str) -> None:
        @broker.subscriber(topic, decoder=raw)
        async def seen(msg: KafkaMessage) -> None:
            key = getattr(msg.raw_message, "key", None)
            holder["p"].seen.setdefault(topic, []).append(
                Seen(
                    key=key.decode() if key else None,
                    headers=dict(msg.headers),
                    body=msg.body,
                )
            )

    for topic in (
        topics.CASES,
        topics.REFERRAL_ALERTS,
        EDF_DLT,
        topics.dead_letters(topics.PARTNER_REPORTS),
        topics.dead_letters(topics.INTAKE_CASES),
    ):
        watch(topic)
    await runtime.prepare_database()
    async with TestKafkaBroker(broker) as test_broker:
        holder["p"] = Platform(test_broker, runtime)
        yield holder["p"]
    await runtime.database.dispose()


async def test_an_energy_case_in_lyon_is_opened_and_requested_from_edf(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened(category="energy_bill", postal_code="69008")
    await platform.intake(case)
    [(opened_kind, opened), (requested_kind, requested)] = platform.lifecycle(case.case_id)
    assert (opened_kind, requested_kind) == ("case.opened", "referral.requested")
    assert opened == {
        "case_id": str(case.case_id),
        "case_reference": case.case_reference,
        "site_id": "lyon-8",
        "occurred_at": opened["occurred_at"],
        "status": "opened",
        "category": "energy_bill",
        "urgency": "high",
        "channel": "front_desk",
    }
    assert requested["partner_id"] == "edf"
    assert requested["status"] == "requested"
    assert requested["case_reference"] == case.case_reference
    # no personal data on the public lifecycle topic
    published = b"".join(s.body for s in platform.on(topics.CASES))
    for personal in (b"Dupont", b"Marie", b"+33612345678", b"69008", b"coupure"):
        assert personal not in published
    record = platform.on(topics.CASES)[0]
    assert record.headers["ce_source"] == "urn:pimms:referrals"
    assert record.headers["ce_correlationid"] == "corr-1"


async def test_energy_in_paris_routes_to_edf_but_water_in_paris_is_unroutable(
    platform: Platform, build: Any
) -> None:
    energy = build.case_opened(category="energy_bill", postal_code="75001")
    water = build.case_opened(category="water_bill", postal_code="75001")
    await platform.intake(energy)
    await platform.intake(water)
    assert platform.kinds(energy.case_id) == ["case.opened", "referral.requested"]
    assert platform.kinds(water.case_id) == ["case.opened", "referral.unroutable"]
    unroutable = platform.lifecycle(water.case_id)[1][1]
    assert unroutable["departement"] == "75"
    assert unroutable["reason"] == "no_matching_partner"
    assert "referral_id" not in unroutable


async def test_the_full_edf_lifecycle_closes_the_case_resolved(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    await platform.gateway(build.delivered(case_id, referral_id))
    for status in ("received", "accepted", "in_progress"):
        await platform.gateway(build.reported(case_id, referral_id, status))
    await platform.gateway(
        build.reported(case_id, referral_id, "on_hold", missing_documents=("last_bill",))
    )
    await platform.gateway(build.reported(case_id, referral_id, "in_progress"))
    await platform.gateway(build.reported(case_id, referral_id, "completed", outcome="resolved"))
    assert platform.kinds(case.case_id) == [
        "case.opened",
        "referral.requested",
        "referral.transmitted",
        "referral.received",
        "referral.accepted",
        "referral.in_progress",
        "referral.on_hold",
        "referral.in_progress",
        "referral.completed",
        "case.closed",
    ]
    events = dict(platform.lifecycle(case.case_id))
    assert events["referral.on_hold"]["reason"] == "missing_documents"
    assert events["referral.on_hold"]["missing_documents"] == ["last_bill"]
    assert events["referral.completed"]["outcome"] == "resolved"
    assert events["case.closed"]["outcome"] == "resolved"
    assert events["case.closed"]["reason"] is None
    for _, data in platform.lifecycle(case.case_id):
        assert {"case_id", "case_reference", "site_id", "occurred_at"} <= data.keys()
    assert platform.on(EDF_DLT) == []
    async with platform.runtime.database.sessions() as session:
        repo = platform.runtime.pipeline.repositories(session)
        history = await repo.history(referral_id)
        stored = await repo.stored_referral(referral_id)
    assert stored is not None
    assert stored.transmitted_at == platform.runtime.clock.now()
    assert stored.ack_due_at == stored.transmitted_at + timedelta(hours=48)  # EDF: 48 h
    assert stored.resolve_due_at == stored.transmitted_at + timedelta(days=15)  # and 15 days
    assert [(status, source) for status, _, source, _ in history] == [
        ("requested", "routing"),
        ("transmitted", "gateway"),
        ("received", "partner"),
        ("accepted", "partner"),
        ("in_progress", "partner"),
        ("on_hold", "partner"),
        ("in_progress", "partner"),
        ("completed", "partner"),
    ]
    assert history[-1][3] == "resolved"
    assert history[0][1].tzinfo is not None


async def test_a_partner_may_skip_steps(platform: Platform, build: Any) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    await platform.gateway(build.delivered(case_id, referral_id))
    await platform.gateway(build.reported(case_id, referral_id, "rejected", reason="out_of_scope"))
    assert platform.kinds(case.case_id)[-2:] == ["referral.rejected", "case.closed"]
    assert platform.lifecycle(case.case_id)[-2][1]["reason"] == "out_of_scope"
    assert platform.lifecycle(case.case_id)[-1][1]["outcome"] == "not_resolved"


async def test_an_impossible_report_is_refused_and_the_next_valid_one_applies(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    await platform.gateway(build.delivered(case_id, referral_id))
    await platform.gateway(build.reported(case_id, referral_id, "accepted"))
    report_id = str(uuid.uuid4())
    await platform.gateway(
        build.reported(case_id, referral_id, "received", report_id=report_id),
        ce_id="report-back",
    )
    await platform.gateway(build.reported(case_id, referral_id, "in_progress"))

    [alert] = platform.on(topics.REFERRAL_ALERTS)
    assert alert.key == case_id
    assert alert.ce_type == "fr.pimms.referral.report_refused.v1"
    assert alert.json == {
        "case_id": case_id,
        "case_reference": case.case_reference,
        "site_id": "lyon-8",
        "referral_id": referral_id,
        "partner_id": "edf",
        "reported_status": "received",
        "current_status": "accepted",
        "reason": "impossible_transition",
        "occurred_at": alert.json["occurred_at"],
        "report_id": report_id,
    }
    # which report was refused: partner-gateways dead-letters the partner's record from this
    assert alert.headers["ce_causationid"] == "report-back"
    assert alert.headers["ce_correlationid"] == "corr-1"
    assert alert.headers["ce_source"] == "urn:pimms:referrals"
    # referrals never writes to a partner's topics, nor dead-letters the gateway's report
    assert platform.on(EDF_DLT) == []
    assert platform.on(topics.dead_letters(topics.PARTNER_REPORTS)) == []
    assert platform.kinds(case.case_id)[-2:] == ["referral.accepted", "referral.in_progress"]


async def test_a_report_after_the_referral_is_final_is_refused(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    await platform.gateway(build.reported(case_id, referral_id, "completed", outcome="resolved"))
    await platform.gateway(build.reported(case_id, referral_id, "in_progress"))
    assert platform.kinds(case.case_id).count("case.closed") == 1
    assert platform.kinds(case.case_id)[-1] == "case.closed"
    [alert] = platform.on(topics.REFERRAL_ALERTS)
    assert alert.json["reason"] == "impossible_transition"
    assert (alert.json["reported_status"], alert.json["current_status"]) == (
        "in_progress",
        "completed",
    )
    assert platform.on(EDF_DLT) == []


async def test_the_same_status_again_changes_nothing(platform: Platform, build: Any) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    await platform.gateway(build.reported(case_id, referral_id, "received"))
    await platform.gateway(build.reported(case_id, referral_id, "received"))
    # and a delivery note arriving after the partner's answer adds nothing either
    await platform.gateway(build.delivered(case_id, referral_id))
    assert platform.kinds(case.case_id) == [
        "case.opened",
        "referral.requested",
        "referral.received",
    ]
    assert platform.on(EDF_DLT) == []


async def test_a_report_for_an_unknown_referral_is_dead_lettered_where_referrals_read_it(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.intake(case)
    stranger = "00000000-0000-4000-8000-000000000001"
    await platform.gateway(build.reported(str(case.case_id), stranger, "received"))
    # a referral of this case, but reported by another partner, is not theirs either
    referral_id = platform.referral_id(case.case_id)
    await platform.gateway(
        build.reported(str(case.case_id), referral_id, "received", partner_id="la-poste")
    )
    dead = platform.on(topics.dead_letters(topics.PARTNER_REPORTS))
    assert [d.headers["pimms_dlt_reason"] for d in dead] == ["unknown_reference"] * 2
    assert [d.headers["pimms_dlt_error"] for d in dead] == [
        f"edf reported received for referral {stranger}, which was never sent to this partner",
        f"la-poste reported received for referral {referral_id}, "
        "which was never sent to this partner",
    ]
    assert dead[0].ce_type == "fr.pimms.gateway.status_reported.v1"  # the report as it came
    assert dead[0].json["referral_id"] == stranger
    assert dead[0].headers["pimms_dlt_service"] == "referrals"
    assert platform.on(EDF_DLT) == []
    assert platform.on(topics.REFERRAL_ALERTS) == []
    assert platform.kinds(case.case_id) == ["case.opened", "referral.requested"]


async def test_deliveries_of_unknown_referrals_are_dead_lettered_with_what_they_were(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    unopened = "00000000-0000-4000-8000-000000000002"
    await platform.gateway(build.delivered(case_id, referral_id, partner_id="la-poste"))
    await platform.gateway(build.delivery_failed(unopened, referral_id))
    dead = platform.on(topics.dead_letters(topics.PARTNER_REPORTS))
    assert [
        (d.ce_type, d.headers["pimms_dlt_reason"], d.headers["pimms_dlt_error"]) for d in dead
    ] == [
        (
            "fr.pimms.gateway.delivered.v1",
            "unknown_reference",
            f"delivery of a referral to la-poste for referral {referral_id}, "
            "which referrals does not know for this partner",
        ),
        (
            "fr.pimms.gateway.delivery_failed.v1",
            "unknown_reference",
            f"delivery failure to edf for referral {referral_id}, "
            "which referrals does not know for this partner",
        ),
    ]
    assert platform.kinds(case.case_id) == ["case.opened", "referral.requested"]


async def test_documents_or_withdrawal_of_a_case_never_opened_are_dead_lettered(
    platform: Platform, build: Any
) -> None:
    never_opened = build.case_opened()
    await platform.intake(build.documents_added(never_opened, ("last_bill",)))
    await platform.intake(build.withdrawn(never_opened))
    dead = platform.on(topics.dead_letters(topics.INTAKE_CASES))
    assert [(d.headers["pimms_dlt_reason"], d.headers["pimms_dlt_error"]) for d in dead] == [
        (
            "unknown_case",
            f"documents added for case {never_opened.case_id}, which was never opened here",
        ),
        (
            "unknown_case",
            f"withdrawal for case {never_opened.case_id}, which was never opened here",
        ),
    ]
    assert platform.on(topics.CASES) == []


async def test_withdrawal_cancels_unfinished_referrals_and_closes_the_case(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    await platform.gateway(build.delivered(case_id, referral_id))
    await platform.intake(build.withdrawn(case, "visitor_request"))
    assert platform.kinds(case.case_id)[-2:] == ["referral.cancelled", "case.closed"]
    cancelled, closed = (data for _, data in platform.lifecycle(case.case_id)[-2:])
    assert cancelled["reason"] == "visitor_request"
    assert cancelled["referral_id"] == referral_id
    assert (closed["outcome"], closed["reason"]) == ("withdrawn", "visitor_request")
    # withdrawing again, or the cancellation's delivery note, changes nothing
    await platform.intake(build.withdrawn(case, "duplicate"))
    await platform.gateway(build.delivered(case_id, referral_id, kind="cancellation"))
    assert platform.kinds(case.case_id)[-1] == "case.closed"
    assert platform.kinds(case.case_id).count("case.closed") == 1
    assert platform.kinds(case.case_id).count("referral.cancelled") == 1


async def test_an_unroutable_case_closes_only_when_withdrawn(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened(category="water_bill", postal_code="75001")
    await platform.intake(case)
    await platform.intake(build.documents_added(case, ("last_bill",)))
    assert platform.kinds(case.case_id) == ["case.opened", "referral.unroutable"]
    await platform.intake(build.withdrawn(case, "resolved_at_desk"))
    assert platform.kinds(case.case_id) == [
        "case.opened",
        "referral.unroutable",
        "case.closed",
    ]
    closed = platform.lifecycle(case.case_id)[-1][1]
    assert (closed["outcome"], closed["reason"]) == ("withdrawn", "resolved_at_desk")


async def test_a_failed_delivery_is_final_and_closes_the_case(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    await platform.gateway(build.delivery_failed(case_id, referral_id))
    await platform.gateway(build.delivery_failed(case_id, referral_id))
    assert platform.kinds(case.case_id)[-2:] == ["referral.delivery_failed", "case.closed"]
    assert platform.lifecycle(case.case_id)[-2][1]["reason"] == "http_400"
    assert platform.lifecycle(case.case_id)[-1][1]["outcome"] == "not_resolved"
    assert platform.kinds(case.case_id).count("referral.delivery_failed") == 1


async def test_a_redelivered_message_has_no_second_effect(platform: Platform, build: Any) -> None:
    case = build.case_opened()
    await platform.intake(case, ce_id="intake-event-1")
    await platform.intake(case, ce_id="intake-event-1")  # redelivered: the inbox drops it
    await platform.intake(case, ce_id="intake-event-2")  # the same case sent again
    assert platform.kinds(case.case_id) == ["case.opened", "referral.requested"]
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    report = build.reported(case_id, referral_id, "completed", outcome="resolved")
    await platform.gateway(report, ce_id="report-1")
    await platform.gateway(report, ce_id="report-1")
    await platform.gateway(report, ce_id="report-2")
    assert platform.kinds(case.case_id) == [
        "case.opened",
        "referral.requested",
        "referral.completed",
        "case.closed",
    ]
    assert platform.on(EDF_DLT) == []


async def test_a_broken_event_goes_to_dead_letters_and_the_next_one_is_handled(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.broker.publish(
        b'{"case_id": "nope"}',
        topics.INTAKE_CASES,
        key=b"k",
        headers={
            "ce_specversion": "1.0",
            "ce_id": "broken-1",
            "ce_source": "urn:pimms:intake",
            "ce_type": "fr.pimms.intake.case_opened.v1",
            "ce_time": "2026-11-27T09:30:00+01:00",
            "content-type": "application/json",
        },
    )
    await platform.runtime.relay.drain()
    await platform.intake(case)
    [dead] = platform.on(topics.dead_letters(topics.INTAKE_CASES))
    assert dead.headers["pimms_dlt_reason"] == "schema_invalid"
    assert platform.kinds(case.case_id) == ["case.opened", "referral.requested"]


async def test_a_report_lacking_its_outcome_is_dead_lettered(
    platform: Platform, build: Any
) -> None:
    case = build.case_opened()
    await platform.intake(case)
    case_id, referral_id = str(case.case_id), platform.referral_id(case.case_id)
    await platform.gateway(build.reported(case_id, referral_id, "completed"))
    [dead] = platform.on(topics.dead_letters(topics.PARTNER_REPORTS))
    assert dead.headers["pimms_dlt_reason"] == "schema_invalid"
    assert platform.kinds(case.case_id) == ["case.opened", "referral.requested"]
