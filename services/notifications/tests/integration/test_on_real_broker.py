"""Notifications on a real broker (Tansu or Kafka) and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_contracts.v1.frontoffice import ContactConsent
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    PartnerReportRefused,
    SharedNeed,
    SharedVisitor,
)
from pimms_contracts.v1.lifecycle import ReferralCompleted, ReferralOnHold
from pimms_notifications.adapters.repository import notifications_of_case
from pimms_notifications.app import build_runtime
from pimms_notifications.settings import NotificationsSettings
from pimms_servicekit.clock import SteeredClock
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.tables import parked
from pimms_servicekit.testing import KafkaEndpoint, Record, TopicWatcher, event_message, produce
from sqlalchemy import func, select

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def settings_for(kafka: KafkaEndpoint, database_url: str, data_dir: Path) -> NotificationsSettings:
    return NotificationsSettings(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
        moment_window=timedelta(milliseconds=300),
        job_interval_s=0.05,
    )


def case_opened(*, sms: bool, reference: str) -> IntakeCaseOpened:
    return IntakeCaseOpened(
        case_id=uuid.uuid4(),
        case_reference=reference,
        submission_id=uuid.uuid4(),
        site_id="lyon-8",
        mediator_id="m-042",
        channel="front_desk",
        submitted_at=AT,
        opened_at=AT,
        visitor=SharedVisitor(
            first_name="Marie",
            last_name="Dupont",
            phone="+33612345678" if sms else None,
            email=None,
            postal_code="69008",
            language="en",
            contact_consent=ContactConsent(sms=sms, email=False),
        ),
        need=SharedNeed(category="energy_bill", summary="Facture", urgency="high", documents=()),
    )


def about(case: IntakeCaseOpened, partner: str) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "case_reference": case.case_reference,
        "site_id": case.site_id,
        "occurred_at": AT,
        "referral_id": uuid.uuid5(case.case_id, partner),
        "partner_id": partner,
    }


async def parked_count(runtime: ServiceRuntime, case_ids: set[str]) -> int:
    async with runtime.database.sessions() as session:
        statement = select(func.count()).where(parked.c.park_key.in_(case_ids))
        return int((await session.execute(statement)).scalar_one())


async def wait_until_parked(runtime: ServiceRuntime, case_ids: set[str], count: int) -> None:
    deadline = time.monotonic() + 30
    while await parked_count(runtime, case_ids) < count:
        assert time.monotonic() < deadline, "the lifecycle events were never parked"
        await asyncio.sleep(0.05)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_visitors_and_mediators_are_told_through_kafka(
    kafka: KafkaEndpoint, database_url: str, tmp_path: Path
) -> None:
    # Platform time runs from a morning: at night, the SMS would rightly wait for 08:00.
    clock = SteeredClock(AT, anchor=time.time(), scale=1.0)
    runtime = build_runtime(settings_for(kafka, database_url, tmp_path), clock=clock)
    app = runtime.build_app()
    reachable = case_opened(sms=True, reference="LYON8-2026-000501")
    unreachable = case_opened(sms=False, reference="LYON8-2026-000502")
    ours = {str(reachable.case_id), str(unreachable.case_id)}
    opened = event_message(
        topics.INTAKE_CASES, reachable, key=str(reachable.case_id), source="urn:pimms:intake"
    )
    await app.start()
    watcher = await TopicWatcher(kafka.bootstrap_servers, [topics.NOTIFICATIONS]).start()
    try:
        # The lifecycle reaches notifications before intake's case_opened: it waits for it.
        await produce(
            kafka.bootstrap_servers,
            [
                event_message(
                    topics.CASES,
                    ReferralCompleted(**about(reachable, "edf"), outcome="resolved"),
                    key=str(reachable.case_id),
                    source="urn:pimms:referrals",
                ),
                event_message(
                    topics.REFERRAL_ALERTS,
                    PartnerReportRefused(
                        **about(reachable, "edf"),
                        reported_status="accepted",
                        current_status="completed",
                    ),
                    key=str(reachable.case_id),
                    source="urn:pimms:referrals",
                ),
                event_message(
                    topics.CASES,
                    ReferralOnHold(**about(unreachable, "la-poste")),
                    key=str(unreachable.case_id),
                    source="urn:pimms:referrals",
                ),
            ],
        )
        await wait_until_parked(runtime, ours, 3)
        unreachable_opened = event_message(
            topics.INTAKE_CASES, unreachable, key=str(unreachable.case_id)
        )
        # The same message twice (same ce_id): the visitor still gets one SMS.
        await produce(kafka.bootstrap_servers, [opened, unreachable_opened, opened])

        def about_ours(records: list[Record]) -> list[Record]:
            return [r for r in records if r.json["case_id"] in ours]

        await watcher.wait_for(lambda rs: len(about_ours(rs)) >= 4, what="4 notifications")
        await wait_until(lambda: runtime.pipeline.stats.duplicates >= 1, "the redelivery")
        await runtime.relay.drain()
        await watcher.poll()
        records = about_ours(watcher.records)
        told = sorted(
            (
                r.json["case_id"] == str(reachable.case_id),
                r.ce_type or "",
                r.json["audience"],
                r.json["channel"] or "-",
                r.json["template"],
            )
            for r in records
        )
        sent, failed = "fr.pimms.notification.sent.v1", "fr.pimms.notification.failed.v1"
        # What waited for the profile arrives with the opening: one moment, one message each;
        # the mediator learns the visitor cannot be reached in the message of that moment.
        assert told == sorted(
            [
                (True, sent, "visitor", "sms", "combined"),
                (True, sent, "mediator", "mediator_inbox", "combined"),
                (False, failed, "visitor", "-", "combined"),
                (False, sent, "mediator", "mediator_inbox", "combined"),
            ]
        )
        for record in records:
            assert record.key == record.json["case_id"]
            assert record.headers["ce_source"] == "urn:pimms:notifications"
            assert record.headers["ce_causationid"]
        assert await parked_count(runtime, ours) == 0

        visitor_sms = {
            r.json["notification_id"]
            for r in records
            if r.json["channel"] == "sms" and r.ce_type == sent
        }
        sms_folder = tmp_path / "notifications" / "sms"
        assert {p.stem for p in sms_folder.iterdir()} == visitor_sms
        [text] = [p.read_text(encoding="utf-8") for p in sms_folder.iterdir()]
        assert text.startswith("To: +33612345678\n\nPIMMS: Hello Marie")
        assert "EDF has dealt with your request: a solution was found." in text
        inbox = tmp_path / "notifications" / "mediator_inbox" / "lyon-8" / "m-042"
        assert len(list(inbox.iterdir())) == 2

        async with runtime.database.sessions() as session:
            rows = await notifications_of_case(session, case_id=str(unreachable.case_id))
        assert sorted((r.audience, r.template, r.status) for r in rows) == [
            ("mediator", "combined", "sent"),
            ("mediator", "visitor_unreachable", "merged"),
            ("visitor", "combined", "failed"),
            ("visitor", "referral_on_hold", "merged"),
        ]
    finally:
        await watcher.stop()
        await app.stop()
