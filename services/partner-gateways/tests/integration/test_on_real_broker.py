"""The gateway on a real broker (Tansu or Kafka) and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_contracts.v1.internal import IntakeCaseOpened
from pimms_partner_gateways.adapters.tables import deliveries
from pimms_partner_gateways.app import build_runtime
from pimms_partner_gateways.settings import GatewaySettings
from pimms_servicekit.tables import outbox
from pimms_servicekit.testing import KafkaEndpoint, Record, TopicWatcher, event_message, produce
from sqlalchemy import select

pytestmark = pytest.mark.integration

EDF_FEED = topics.partner_referrals("edf")
EDF_ANSWERS = topics.partner_responses("edf")


async def _check_delivered_only_after_edf_acknowledged(runtime: Any, case_id: str) -> None:
    """PartnerDelivered was written by the relay's on_sent hook, once Kafka had EDF's message."""
    async with runtime.database.transaction() as session:
        rows = (
            await session.execute(
                select(outbox.c.topic, outbox.c.event_type, outbox.c.created_at, outbox.c.sent_at)
                .where(outbox.c.case_id == case_id)
                .order_by(outbox.c.id)
            )
        ).all()
        status = (
            await session.execute(
                select(deliveries.c.status, deliveries.c.delivered_at).where(
                    deliveries.c.case_id == case_id
                )
            )
        ).one()
    [edf_row] = [r for r in rows if r.topic == EDF_FEED]
    [delivered_row] = [r for r in rows if r.event_type == "fr.pimms.gateway.delivered.v1"]
    assert edf_row.sent_at is not None
    assert delivered_row.created_at >= edf_row.sent_at
    assert status.status == "delivered"
    assert status.delivered_at == edf_row.sent_at


def settings_for(kafka: KafkaEndpoint, database_url: str, data_dir: Path) -> GatewaySettings:
    return GatewaySettings(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
    )


async def test_edf_gets_the_referral_then_referrals_hears_it_was_delivered_and_answered(
    kafka: KafkaEndpoint,
    database_url: str,
    tmp_path: Path,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    runtime = build_runtime(settings_for(kafka, database_url, tmp_path))
    app = runtime.build_app()
    case = case_opened()
    case_id = str(case.case_id)
    requested = referral_requested(case, "edf")
    referral_id = str(requested.referral_id)
    await app.start()
    watcher = await TopicWatcher(
        kafka.bootstrap_servers,
        [topics.PARTNER_REPORTS, EDF_FEED, topics.dead_letters(EDF_ANSWERS)],
    ).start()
    try:
        # the referral first: the two topics are not ordered with each other
        await produce(
            kafka.bootstrap_servers,
            [
                event_message(topics.CASES, requested, key=case_id, correlation_id="corr-real"),
                event_message(topics.INTAKE_CASES, case, key=case_id, correlation_id="corr-real"),
            ],
        )

        def reports(ce_type: str) -> list[Record]:
            return [
                r
                for r in watcher.of(topics.PARTNER_REPORTS, ce_type)
                if r.json["referral_id"] == referral_id
            ]

        def sent_to_edf() -> list[Record]:
            return [r for r in watcher.of(EDF_FEED) if r.key == referral_id]

        await watcher.wait_for(
            lambda _: bool(reports("fr.pimms.gateway.delivered.v1")), what="PartnerDelivered"
        )
        [referral] = sent_to_edf()
        assert referral.json["reference"] == referral_id
        assert referral.json["dossierPimms"] == case.case_reference
        assert not any(name.startswith("ce_") for name in referral.headers)
        [delivered] = reports("fr.pimms.gateway.delivered.v1")
        assert delivered.key == case_id
        assert delivered.json["kind"] == "referral"
        assert delivered.json["partner_id"] == "edf"
        assert delivered.headers["ce_correlationid"] == "corr-real"
        await _check_delivered_only_after_edf_acknowledged(runtime, case_id)

        answer = {
            "reference": referral_id,
            "statut": "PRIS_EN_CHARGE",
            "horodatage": "2026-11-28T10:00:00+01:00",
        }
        await produce(
            kafka.bootstrap_servers,
            [
                (EDF_ANSWERS, referral_id.encode(), b"{oops", []),
                (EDF_ANSWERS, referral_id.encode(), json.dumps(answer).encode(), []),
            ],
        )
        await watcher.wait_for(
            lambda _: bool(reports("fr.pimms.gateway.status_reported.v1")),
            what="PartnerStatusReported",
        )
        [reported] = reports("fr.pimms.gateway.status_reported.v1")
        assert reported.key == case_id
        assert reported.json["status"] == "accepted"
        # meaning, not Kafka coordinates: the report's id, under which the gateway keeps EDF's bytes
        assert reported.json["source"] is None
        assert uuid.UUID(reported.json["report_id"])
        assert reported.headers["ce_correlationid"] == "corr-real"

        def our_dead_letters() -> list[Record]:
            return [r for r in watcher.of(topics.dead_letters(EDF_ANSWERS)) if r.key == referral_id]

        await watcher.wait_for(lambda _: bool(our_dead_letters()), what="the bad answer's DLT")
        [dead] = our_dead_letters()
        assert dead.value == b"{oops"
        assert dead.headers["pimms_dlt_reason"] == "not_json"
        assert len(sent_to_edf()) == 1
    finally:
        await watcher.stop()
        await app.stop()
