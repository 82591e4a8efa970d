"""Intake on a real broker (Tansu or Kafka) and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_intake.app import build_runtime
from pimms_intake.settings import IntakeSettings
from pimms_servicekit.testing import KafkaEndpoint, TopicWatcher, produce

pytestmark = pytest.mark.integration


def settings_for(kafka: KafkaEndpoint, database_url: str, data_dir: Path) -> IntakeSettings:
    return IntakeSettings(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
    )


def need_message(
    data: dict,
    *,
    ce_type: str = "fr.pimms.need.submitted.v1",
    value: bytes | None = None,
    ce_id: str | None = None,
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", (ce_id or data.get("submission_id", "x") + ce_type).encode()),
        ("ce_source", b"urn:pimms:site:lyon-8:frontdesk"),
        ("ce_type", ce_type.encode()),
        ("ce_time", b"2026-11-27T09:30:00+01:00"),
        ("content-type", b"application/json"),
    ]
    body = value if value is not None else json.dumps(data).encode()
    return topics.INTAKE_NEEDS, str(data.get("submission_id", "none")).encode(), body, headers


async def test_needs_are_answered_through_kafka_and_bad_ones_do_not_block(
    kafka: KafkaEndpoint, database_url: str, tmp_path: Path
) -> None:
    runtime = build_runtime(settings_for(kafka, database_url, tmp_path))
    app = runtime.build_app()
    good = need_submitted()
    invalid = need_submitted(visitor__phone="12")
    no_consent = need_submitted(consent_to_share=False)
    behind = need_submitted(site_id="brest")
    garbage_id = f"garbage-{uuid.uuid4()}"
    await app.start()
    watcher = await TopicWatcher(
        kafka.bootstrap_servers,
        [topics.INTAKE_FEEDBACK, topics.INTAKE_CASES, topics.dead_letters(topics.INTAKE_NEEDS)],
    ).start()
    try:
        await produce(
            kafka.bootstrap_servers,
            [
                need_message(good),
                need_message({}, value=b"\x00\x01 not json", ce_id=garbage_id),
                need_message(invalid),
                need_message(no_consent),
                need_message(good, ce_id="repeat-of-good"),
                need_message(behind),
            ],
        )
        ours = {
            good["submission_id"],
            invalid["submission_id"],
            no_consent["submission_id"],
            behind["submission_id"],
        }

        def answers_to_us() -> list:
            return [
                r for r in watcher.of(topics.INTAKE_FEEDBACK) if r.json["submission_id"] in ours
            ]

        await watcher.wait_for(lambda _: len(answers_to_us()) >= 5, what="5 answers")
        answers = {(r.json["submission_id"], r.ce_type) for r in answers_to_us()}
        assert (good["submission_id"], "fr.pimms.need.accepted.v1") in answers
        assert (invalid["submission_id"], "fr.pimms.need.rejected.v1") in answers
        assert (no_consent["submission_id"], "fr.pimms.need.rejected.v1") in answers
        assert (behind["submission_id"], "fr.pimms.need.accepted.v1") in answers
        accepted_good = [
            r.json for r in answers_to_us() if r.json["submission_id"] == good["submission_id"]
        ]
        assert len(accepted_good) == 2
        assert accepted_good[0] == accepted_good[1]

        def opened_for_us() -> list:
            return [r for r in watcher.of(topics.INTAKE_CASES) if r.json["submission_id"] in ours]

        # the answers and the cases are two topics: one may be read before the other
        await watcher.wait_for(lambda _: len(opened_for_us()) >= 2, what="2 cases opened")
        opened = opened_for_us()
        assert len(opened) == 2  # good and behind, once each

        def our_dead_letters() -> list:
            return [
                r
                for r in watcher.of(topics.dead_letters(topics.INTAKE_NEEDS))
                if r.headers.get("ce_id")
                in {garbage_id, invalid["submission_id"] + "fr.pimms.need.submitted.v1"}
            ]

        await watcher.wait_for(lambda _: len(our_dead_letters()) >= 2, what="2 dead letters")
        reasons = sorted(r.headers["pimms_dlt_reason"] for r in our_dead_letters())
        assert reasons == ["not_json", "schema_invalid"]
        garbage = next(r for r in our_dead_letters() if r.headers["ce_id"] == garbage_id)
        assert garbage.value == b"\x00\x01 not json"  # the original bytes, untouched
        for record in answers_to_us():
            assert record.key == record.json["submission_id"]
            assert record.headers["ce_source"] == "urn:pimms:intake"
            assert record.headers["ce_correlationid"]
        for record in opened:
            assert record.key == record.json["case_id"]
    finally:
        await watcher.stop()
        await app.stop()
