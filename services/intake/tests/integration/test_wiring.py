"""Intake wired on faststream's in-memory TestKafkaBroker: what a front-office tool sees."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_intake.app import build_runtime
from pimms_intake.settings import IntakeSettings
from pimms_servicekit.clock import ManualClock


class Desk:
    """A front-office tool talking to intake through the in-memory broker."""

    def __init__(self, broker: Any, runtime: Any) -> None:
        self.broker = broker
        self.runtime = runtime
        self.feedback: list[tuple[str, dict[str, Any]]] = []
        self.cases: list[tuple[str, dict[str, Any]]] = []
        self.dead_letters: list[dict[str, str]] = []

    async def send(
        self,
        body: bytes | dict[str, Any],
        *,
        ce_type: str = "fr.pimms.need.submitted.v1",
        key: str = "k",
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        value = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {
            "ce_specversion": "1.0",
            "ce_id": f"id-{len(self.feedback)}-{id(value)}",
            "ce_source": "urn:pimms:site:lyon-8:frontdesk",
            "ce_type": ce_type,
            "ce_time": "2026-11-27T09:30:00+01:00",
            "content-type": "application/json",
            **(extra_headers or {}),
        }
        await self.broker.publish(value, topics.INTAKE_NEEDS, key=key.encode(), headers=headers)
        await self.runtime.relay.drain()


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    settings = IntakeSettings(
        data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}"
    )
    runtime = build_runtime(settings, clock=ManualClock())
    runtime.subscribe()
    runtime.use_test_broker()
    broker = runtime.broker
    state: dict[str, Desk] = {}

    @broker.subscriber(topics.INTAKE_FEEDBACK)
    async def feedback(msg: KafkaMessage) -> None:
        state["desk"].feedback.append((msg.headers["ce_type"], json.loads(msg.body)))

    @broker.subscriber(topics.INTAKE_CASES)
    async def cases(msg: KafkaMessage) -> None:
        state["desk"].cases.append((msg.headers["ce_type"], json.loads(msg.body)))

    async def raw(message: Any, original: Any) -> Any:
        return message.body

    @broker.subscriber(topics.dead_letters(topics.INTAKE_NEEDS), decoder=raw)
    async def dead(msg: KafkaMessage) -> None:
        state["desk"].dead_letters.append(dict(msg.headers))

    await runtime.prepare_database()
    async with TestKafkaBroker(broker) as test_broker:
        state["desk"] = Desk(test_broker, runtime)
        yield state["desk"]
    await runtime.database.dispose()


async def test_a_valid_need_opens_a_case_and_is_accepted(desk: Desk) -> None:
    need = need_submitted()
    await desk.send(need, key=need["submission_id"])
    [(kind, accepted)] = desk.feedback
    assert kind == "fr.pimms.need.accepted.v1"
    assert accepted["submission_id"] == need["submission_id"]
    assert accepted["case_reference"] == "LYON8-2026-000001"
    [(case_kind, opened)] = desk.cases
    assert case_kind == "fr.pimms.intake.case_opened.v1"
    assert opened["case_id"] == accepted["case_id"]
    assert opened["visitor"]["phone"] == "+33612345678"
    assert opened["visitor"]["email"] is None  # no e-mail consent: not shared


async def test_a_repeat_gets_the_same_answer_and_no_second_case(desk: Desk) -> None:
    need = need_submitted()
    await desk.send(need)
    await desk.send(need)
    assert [k for k, _ in desk.feedback] == ["fr.pimms.need.accepted.v1"] * 2
    assert desk.feedback[0][1] == desk.feedback[1][1]
    assert len(desk.cases) == 1


async def test_same_id_other_content_is_a_conflict(desk: Desk) -> None:
    need = need_submitted()
    await desk.send(need)
    await desk.send({**need, "channel": "phone"})
    kind, rejected = desk.feedback[1]
    assert kind == "fr.pimms.need.rejected.v1"
    assert [e["code"] for e in rejected["errors"]] == ["conflict"]
    assert len(desk.cases) == 1


async def test_an_invalid_need_is_rejected_field_by_field_and_dead_lettered(desk: Desk) -> None:
    need = need_submitted(visitor__phone="06 12", need__category="cooking")
    await desk.send(need)
    [(kind, rejected)] = desk.feedback
    assert kind == "fr.pimms.need.rejected.v1"
    assert {(e["field"], e["code"]) for e in rejected["errors"]} == {
        ("visitor.phone", "invalid_format"),
        ("need.category", "invalid_value"),
    }
    [dead] = desk.dead_letters
    assert dead["pimms_dlt_reason"] == "schema_invalid"
    assert desk.cases == []


async def test_a_rejected_submission_can_be_sent_again_corrected(desk: Desk) -> None:
    need = need_submitted(consent_to_share=False)
    await desk.send(need)
    assert desk.feedback[0][1]["errors"][0]["code"] == "consent_missing"
    assert desk.dead_letters == []  # a business refusal, not a broken message
    await desk.send({**need, "consent_to_share": True})
    assert desk.feedback[1][0] == "fr.pimms.need.accepted.v1"


@pytest.mark.parametrize(
    ("body", "ce_type", "reason"),
    [
        (b"{not json", "fr.pimms.need.submitted.v1", "not_json"),
        (b"[1, 2]", "fr.pimms.need.submitted.v1", "no_submission_id"),
        (b'{"site_id": "lyon-8"}', "fr.pimms.need.submitted.v1", "no_submission_id"),
        (
            b'{"submission_id": "0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11"}',
            "fr.pimms.need.amended.v1",
            "unknown_type",
        ),
    ],
)
async def test_messages_that_cannot_be_answered_go_to_dead_letters(
    desk: Desk, body: bytes, ce_type: str, reason: str
) -> None:
    await desk.send(body, ce_type=ce_type)
    assert desk.feedback == []
    [dead] = desk.dead_letters
    assert dead["pimms_dlt_reason"] == reason
    assert dead["pimms_dlt_service"] == "intake"
    assert dead["pimms_dlt_original_topic"] == topics.INTAKE_NEEDS
    assert {
        "pimms_dlt_error",
        "pimms_dlt_original_partition",
        "pimms_dlt_original_offset",
        "pimms_dlt_failed_at",
    } <= dead.keys()
    # a valid need right behind still goes through
    await desk.send(need_submitted())
    assert desk.feedback[-1][0] == "fr.pimms.need.accepted.v1"


async def test_documents_and_withdrawal_are_acknowledged(desk: Desk) -> None:
    need = need_submitted()
    await desk.send(need)
    sid = need["submission_id"]
    await desk.send(
        {
            "submission_id": sid,
            "documents": ["tax_notices"],
            "added_at": "2026-11-27T10:00:00+01:00",
        },
        ce_type="fr.pimms.need.documents_added.v1",
    )
    await desk.send(
        {
            "submission_id": sid,
            "reason": "visitor_request",
            "withdrawn_at": "2026-11-27T11:00:00+01:00",
        },
        ce_type="fr.pimms.need.withdrawn.v1",
    )
    kinds = [k for k, _ in desk.feedback]
    assert kinds == [
        "fr.pimms.need.accepted.v1",
        "fr.pimms.need.acknowledged.v1",
        "fr.pimms.need.acknowledged.v1",
    ]
    assert [f["acknowledged"] for _, f in desk.feedback[1:]] == ["documents_added", "withdrawn"]
    assert [k for k, _ in desk.cases] == [
        "fr.pimms.intake.case_opened.v1",
        "fr.pimms.intake.documents_added.v1",
        "fr.pimms.intake.case_withdrawn.v1",
    ]
    assert desk.cases[1][1]["documents"] == ["id_card", "last_bill", "tax_notices"]


async def test_unknown_submission_is_rejected(desk: Desk) -> None:
    await desk.send(
        {
            "submission_id": "0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a99",
            "reason": "duplicate",
            "withdrawn_at": "2026-11-27T11:00:00+01:00",
        },
        ce_type="fr.pimms.need.withdrawn.v1",
    )
    [(kind, rejected)] = desk.feedback
    assert kind == "fr.pimms.need.rejected.v1"
    assert rejected["errors"][0]["code"] == "unknown_submission"
