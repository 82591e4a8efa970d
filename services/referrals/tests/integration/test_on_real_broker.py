"""Referrals on a real broker (Tansu or Kafka) and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_referrals.app import build_runtime
from pimms_referrals.settings import ReferralsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.testing import KafkaEndpoint, Record, TopicWatcher, event_message, produce

pytestmark = pytest.mark.integration

EDF_DLT = topics.dead_letters(topics.partner_responses("edf"))


def settings_for(
    kafka: KafkaEndpoint, database_url: str, data_dir: Path, **more: Any
) -> ReferralsSettings:
    return ReferralsSettings(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
        **more,
    )


def kind(record: Record) -> str:
    return (record.ce_type or "").removeprefix("fr.pimms.").removesuffix(".v1")


async def test_a_case_lives_its_whole_lifecycle_through_kafka(
    kafka: KafkaEndpoint, database_url: str, tmp_path: Path, build: Any
) -> None:
    runtime = build_runtime(settings_for(kafka, database_url, tmp_path))
    app = runtime.build_app()
    lyon = build.case_opened(category="energy_bill", postal_code="69008")
    paris_water = build.case_opened(category="water_bill", postal_code="75001")
    ours = {str(lyon.case_id), str(paris_water.case_id)}
    await app.start()
    watcher = await TopicWatcher(
        kafka.bootstrap_servers, [topics.CASES, topics.REFERRAL_ALERTS, EDF_DLT]
    ).start()

    def lifecycle(case_id: Any) -> list[str]:
        return [kind(r) for r in watcher.of(topics.CASES) if r.key == str(case_id)]

    try:
        await produce(
            kafka.bootstrap_servers,
            [
                event_message(topics.INTAKE_CASES, lyon, key=str(lyon.case_id)),
                event_message(topics.INTAKE_CASES, paris_water, key=str(paris_water.case_id)),
            ],
        )
        await watcher.wait_for(
            lambda _: (
                len(lifecycle(lyon.case_id)) >= 2 and len(lifecycle(paris_water.case_id)) >= 2
            ),
            what="both cases opened and routed",
        )
        assert lifecycle(lyon.case_id) == ["case.opened", "referral.requested"]
        assert lifecycle(paris_water.case_id) == ["case.opened", "referral.unroutable"]
        [requested] = [
            r
            for r in watcher.of(topics.CASES, "fr.pimms.referral.requested.v1")
            if r.key == str(lyon.case_id)
        ]
        case_id, referral_id = str(lyon.case_id), requested.json["referral_id"]
        backwards = build.edf_answer(referral_id, "RECU")
        reports = [
            build.delivered(case_id, referral_id),
            build.reported(case_id, referral_id, "accepted"),
            build.reported(case_id, referral_id, "received", source=backwards),  # impossible
            build.reported(case_id, referral_id, "completed", outcome="resolved"),
        ]
        # one case's reports share its key, hence one partition: they are read in this order
        messages = [event_message(topics.PARTNER_REPORTS, r, key=case_id) for r in reports]
        backwards_report_id = dict(messages[2][3])["ce_id"].decode()
        await produce(kafka.bootstrap_servers, messages)
        await watcher.wait_for(
            lambda _: "case.closed" in lifecycle(lyon.case_id), what="the case closed"
        )
        assert lifecycle(lyon.case_id) == [
            "case.opened",
            "referral.requested",
            "referral.transmitted",
            "referral.accepted",
            "referral.completed",
            "case.closed",
        ]
        closed = watcher.of(topics.CASES, "fr.pimms.case.closed.v1")
        assert [r.json["outcome"] for r in closed if r.key == case_id] == ["resolved"]
        await watcher.wait_for(
            lambda _: any(r.key == case_id for r in watcher.of(topics.REFERRAL_ALERTS)),
            what="the refused report told on the alerts topic",
        )
        alerts = [r for r in watcher.of(topics.REFERRAL_ALERTS) if r.key == case_id]
        assert [
            (r.json["referral_id"], r.json["reported_status"], r.json["current_status"])
            for r in alerts
        ] == [(referral_id, "received", "accepted")]
        assert alerts[0].json["reason"] == "impossible_transition"
        # which report it refuses: partner-gateways dead-letters the partner's record from this
        assert alerts[0].headers["ce_causationid"] == backwards_report_id
        # the partner's topics are partner-gateways': referrals writes nothing there
        assert [r for r in watcher.of(EDF_DLT) if r.key == referral_id] == []
        for record in watcher.of(topics.CASES):
            if record.key in ours:
                assert record.json["case_id"] == record.key
                assert record.headers["ce_source"] == "urn:pimms:referrals"
    finally:
        await watcher.stop()
        await app.stop()


async def test_the_running_service_chases_a_silent_partner_on_its_clock(
    kafka: KafkaEndpoint, database_url: str, tmp_path: Path, build: Any
) -> None:
    clock = ManualClock()
    settings = settings_for(kafka, database_url, tmp_path, timer_interval_s=0.05)
    app = build_runtime(settings, clock=clock).build_app()
    case = build.case_opened(category="energy_bill", postal_code="69008")
    case_id = str(case.case_id)
    await app.start()
    watcher = await TopicWatcher(kafka.bootstrap_servers, [topics.CASES]).start()

    def lifecycle() -> list[str]:
        return [kind(r) for r in watcher.of(topics.CASES) if r.key == case_id]

    try:
        await produce(
            kafka.bootstrap_servers, [event_message(topics.INTAKE_CASES, case, key=case_id)]
        )
        await watcher.wait_for(lambda _: "referral.requested" in lifecycle(), what="routed")
        [requested] = [
            r
            for r in watcher.of(topics.CASES, "fr.pimms.referral.requested.v1")
            if r.key == case_id
        ]
        delivered = build.delivered(case_id, requested.json["referral_id"])
        await produce(
            kafka.bootstrap_servers,
            [event_message(topics.PARTNER_REPORTS, delivered, key=case_id)],
        )
        await watcher.wait_for(lambda _: "referral.transmitted" in lifecycle(), what="sent")
        clock.advance(timedelta(hours=48))  # EDF's ack delay passes: the scheduler notices
        await watcher.wait_for(lambda _: "referral.reminded" in lifecycle(), what="a reminder")
        clock.advance(timedelta(days=15))
        await watcher.wait_for(lambda _: "case.closed" in lifecycle(), what="expired, closed")
        assert lifecycle() == [
            "case.opened",
            "referral.requested",
            "referral.transmitted",
            "referral.reminded",
            "referral.escalated",
            "referral.expired",
            "case.closed",
        ]
    finally:
        await watcher.stop()
        await app.stop()
