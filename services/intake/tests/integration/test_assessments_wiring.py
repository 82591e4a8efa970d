"""The mediator's assessment through intake (in-memory broker): what the tool and the review see."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.examples import need_submitted
from pimms_contracts.v1.lifecycle import ReferralCompleted, ReferralInProgress, ReferralRequested
from pimms_intake.adapters.tables import assessments
from pimms_intake.app import build_runtime
from pimms_intake.settings import IntakeSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.messages import encode, new_id
from pimms_servicekit.testing import envelope_for
from sqlalchemy import select

ASSESSED = "fr.pimms.referral.assessed.v1"


class Desk:
    """A front-office tool (and referrals' lifecycle feed) talking to intake in memory."""

    def __init__(self, broker: Any, runtime: Any) -> None:
        self.broker = broker
        self.runtime = runtime
        self.feedback: list[tuple[str, dict[str, Any]]] = []
        self.recorded: list[tuple[str, str, dict[str, Any]]] = []
        self.dead_letters: list[dict[str, str]] = []

    async def send(self, body: dict[str, Any], *, ce_type: str) -> None:
        headers = {
            "ce_specversion": "1.0",
            "ce_id": new_id(),
            "ce_source": "urn:pimms:site:lyon-8:frontdesk",
            "ce_type": ce_type,
            "ce_time": "2026-12-20T10:00:00+01:00",
            "content-type": "application/json",
        }
        key = str(body.get("submission_id", "none")).encode()
        await self.broker.publish(
            json.dumps(body).encode(), topics.INTAKE_NEEDS, key=key, headers=headers
        )
        await self.runtime.relay.drain()

    async def lifecycle(self, event: Event) -> None:
        value, headers = encode(event, envelope=envelope_for(event, source="urn:pimms:referrals"))
        await self.broker.publish(
            value,
            topics.CASES,
            key=str(getattr(event, "case_id")).encode(),  # noqa: B009 - any lifecycle event
            headers={name: raw.decode() for name, raw in headers},
        )

    async def stored(self) -> list[dict[str, Any]]:
        async with self.runtime.database.sessions() as session:
            rows = await session.execute(select(assessments))
            return [dict(row._mapping) for row in rows]


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

    @broker.subscriber(topics.INTAKE_ASSESSMENTS)
    async def recorded(msg: KafkaMessage) -> None:
        key = msg.raw_message.key.decode()
        state["desk"].recorded.append((msg.headers["ce_type"], key, json.loads(msg.body)))

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


class Case:
    """A case accepted by intake, with two referrals: EDF completed, La Poste still running."""

    def __init__(self, accepted: dict[str, Any], need: dict[str, Any]) -> None:
        self.submission_id = need["submission_id"]
        self.case_id = accepted["case_id"]
        self.case_reference = accepted["case_reference"]
        self.finished = str(uuid.uuid4())
        self.running = str(uuid.uuid4())

    def about(self, referral_id: str, partner_id: str) -> dict[str, Any]:
        return {
            "case_id": uuid.UUID(self.case_id),
            "case_reference": self.case_reference,
            "site_id": "lyon-8",
            "occurred_at": datetime(2026, 12, 18, 9, 0, tzinfo=UTC),
            "referral_id": uuid.UUID(referral_id),
            "partner_id": partner_id,
        }

    def assessment(self, **changes: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "submission_id": self.submission_id,
            "referral_id": self.finished,
            "mediator_id": "m-042",
            "rating": 4,
            "tags": ["fast", "clear_answer"],
            "comment": "Réponse rapide. Rappeler au 06 12 34 56 78 ou marie@example.org",
            "assessed_at": "2026-12-20T10:00:00+01:00",
        }
        data.update(changes)
        return data


@pytest.fixture
async def case(desk: Desk) -> Case:
    need = need_submitted()
    await desk.send(need, ce_type="fr.pimms.need.submitted.v1")
    [(_, accepted)] = desk.feedback
    desk.feedback.clear()
    opened = Case(accepted, need)
    await desk.lifecycle(ReferralRequested(**opened.about(opened.finished, "edf")))
    await desk.lifecycle(
        ReferralCompleted(**opened.about(opened.finished, "edf"), outcome="resolved")
    )
    await desk.lifecycle(ReferralRequested(**opened.about(opened.running, "laposte")))
    await desk.lifecycle(ReferralInProgress(**opened.about(opened.running, "laposte")))
    return opened


async def test_an_assessment_of_a_finished_referral_is_acknowledged_and_published(
    desk: Desk, case: Case
) -> None:
    await desk.send(case.assessment(), ce_type=ASSESSED)
    [(kind, answer)] = desk.feedback
    assert kind == "fr.pimms.need.acknowledged.v1"
    assert answer["acknowledged"] == "assessed"
    assert (answer["submission_id"], answer["case_reference"]) == (
        case.submission_id,
        case.case_reference,
    )
    [(ce_type, key, recorded)] = desk.recorded
    assert ce_type == "fr.pimms.intake.assessment_recorded.v1"
    assert key == case.case_id
    assert recorded["referral_id"] == case.finished
    assert (recorded["site_id"], recorded["partner_id"]) == ("lyon-8", "edf")
    assert (recorded["rating"], recorded["tags"]) == (4, ["fast", "clear_answer"])
    assert recorded["comment"] == "Réponse rapide. Rappeler au [retiré] ou [retiré]"
    assert "mediator_id" not in recorded
    [stored] = await desk.stored()
    assert stored["comment"] == recorded["comment"]  # never kept with the contact details


async def test_a_second_assessment_of_the_referral_replaces_the_first(
    desk: Desk, case: Case
) -> None:
    await desk.send(case.assessment(), ce_type=ASSESSED)
    await desk.send(
        case.assessment(rating=2, tags=["slow"], comment=None, assessed_at="2026-12-21T08:00:00Z"),
        ce_type=ASSESSED,
    )
    assert [answer["acknowledged"] for _, answer in desk.feedback] == ["assessed", "assessed"]
    [stored] = await desk.stored()
    assert (stored["rating"], stored["tags"], stored["comment"]) == (2, ["slow"], None)
    assert [r["rating"] for _, _, r in desk.recorded] == [4, 2]  # the review keeps the last


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"submission_id": str(uuid.uuid4())}, "submission_id", "unknown_submission"),
        ({"referral_id": str(uuid.uuid4())}, "referral_id", "invalid_value"),  # not this case's
        ({"referral_id": "running"}, "referral_id", "invalid_value"),  # not final yet
        ({"rating": 6}, "rating", "invalid_value"),
        ({"tags": ["fast", "quick"]}, "tags.1", "invalid_value"),
        ({"rating": "4"}, "rating", "invalid_type"),
        ({"assessed_at": "2026-12-20T10:00:00"}, "assessed_at", "invalid_format"),
        ({"comment": "x" * 1001}, "comment", "too_long"),
        ({"mediator_id": None}, "mediator_id", "invalid_type"),
        ({"stars": 5}, "stars", "unknown_field"),
    ],
)
async def test_a_refused_assessment_is_answered_with_its_code_and_not_published(
    desk: Desk, case: Case, changes: dict[str, Any], field: str, code: str
) -> None:
    if changes.get("referral_id") == "running":
        changes = {"referral_id": case.running}
    await desk.send(case.assessment(**changes), ce_type=ASSESSED)
    [(kind, answer)] = desk.feedback
    assert kind == "fr.pimms.need.rejected.v1"
    assert [(e["field"], e["code"]) for e in answer["errors"]] == [(field, code)]
    assert answer["errors"][0]["message"]  # a French sentence for the mediator
    assert desk.recorded == []
    assert await desk.stored() == []


async def test_a_missing_field_is_refused_and_the_broken_message_dead_lettered(
    desk: Desk, case: Case
) -> None:
    body = case.assessment()
    del body["rating"]
    await desk.send(body, ce_type=ASSESSED)
    [(_, answer)] = desk.feedback
    assert [(e["field"], e["code"]) for e in answer["errors"]] == [("rating", "missing")]
    [dead] = desk.dead_letters
    assert dead["pimms_dlt_reason"] == "schema_invalid"


async def test_once_the_running_referral_finishes_it_can_be_assessed(
    desk: Desk, case: Case
) -> None:
    await desk.send(case.assessment(referral_id=case.running), ce_type=ASSESSED)
    await desk.lifecycle(
        ReferralCompleted(**case.about(case.running, "laposte"), outcome="not_resolved")
    )
    await desk.send(case.assessment(referral_id=case.running, rating=1), ce_type=ASSESSED)
    assert [k for k, _ in desk.feedback] == [
        "fr.pimms.need.rejected.v1",
        "fr.pimms.need.acknowledged.v1",
    ]
    assert [(r["partner_id"], r["rating"]) for _, _, r in desk.recorded] == [("laposte", 1)]
