"""Effects after the commit: delivered by their destination's dispatcher, retried durably with
backoff, failed for good after a cap, hooks run with the outcome; one slow destination never
holds up another."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.db import Database
from pimms_servicekit.effects import (
    Delivered,
    DeliveryResult,
    Effect,
    EffectDispatcher,
    Failed,
    RetryLater,
    RetryPolicy,
)
from pimms_servicekit.hooks import Hook, Hooks, Outcome
from pimms_servicekit.pipeline import BatchPipeline
from pimms_servicekit.routing import Handlers
from pimms_servicekit.tables import effects
from pimms_servicekit.unit_of_work import UnitOfWork
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession


class Repos:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class Sent(Hook):
    name: ClassVar[str] = "sent"
    notification: str


class Script:
    """A destination whose answers the test scripts, one list per idempotency key."""

    def __init__(self, name: str, answers: dict[str, list[DeliveryResult]]) -> None:
        self.name = name
        self.policy = RetryPolicy(
            first_delay=timedelta(seconds=10), max_delay=timedelta(minutes=5), max_attempts=3
        )
        self.answers = answers
        self.calls: list[str] = []

    async def deliver(self, effect: Effect) -> DeliveryResult:
        self.calls.append(effect.idempotency_key)
        return self.answers[effect.idempotency_key].pop(0)


class Blocking:
    """A destination that never answers (a hung provider)."""

    name = "hung"
    policy = RetryPolicy(attempt_timeout=60.0)

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def deliver(self, effect: Effect) -> DeliveryResult:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def outcomes() -> list[tuple[str, Outcome]]:
    return []


@pytest.fixture
def hooks(outcomes: list[tuple[str, Outcome]]) -> Hooks[Repos]:
    hooks: Hooks[Repos] = Hooks()

    @hooks.delivered(Sent)
    async def sent(data: Sent, outcome: Outcome, uow: UnitOfWork[Repos]) -> None:
        outcomes.append((data.notification, outcome))
        uow.publish(topic="notifications", key="c", value=b"sent", event_type="sent")

    @hooks.failed(Sent)
    async def failed(data: Sent, outcome: Outcome, uow: UnitOfWork[Repos]) -> None:
        outcomes.append((data.notification, outcome))

    return hooks


@pytest.fixture
def pipeline(database: Database, clock: ManualClock) -> BatchPipeline[Repos]:
    return BatchPipeline(
        service="t", database=database, clock=clock, handlers=Handlers(), repositories=Repos
    )


async def queue(pipeline: BatchPipeline[Repos], destination: str, keys: Sequence[str]) -> None:
    async with pipeline.database.transaction() as session:
        uow = pipeline.unit_of_work(session)
        uow.begin_hook(case_id="c", correlation_id="corr")
        for key in keys:
            uow.dispatch(
                destination=destination,
                idempotency_key=key,
                payload=key.encode(),
                hook=Sent(notification=key),
            )
        uow.end_message()
        await uow.flush()


def dispatcher(
    destination: Any, pipeline: BatchPipeline[Repos], hooks: Hooks[Repos]
) -> EffectDispatcher:
    return EffectDispatcher(
        destination=destination,
        database=pipeline.database,
        clock=pipeline.clock,
        hooks=hooks,
        make_uow=pipeline.unit_of_work,
        rng=random.Random(1),
    )


async def rows(database: Database) -> dict[str, Any]:
    async with database.sessions() as session:
        result = await session.execute(select(effects))
        return {r.idempotency_key: r for r in result}


async def test_delivered_effects_run_their_hook_once(
    pipeline: BatchPipeline[Repos], hooks: Hooks[Repos], outcomes: list[tuple[str, Outcome]]
) -> None:
    script = Script("sms", {"n1": [Delivered(receipt="prov-1")], "n2": [Delivered()]})
    await queue(pipeline, "sms", ["n1", "n2"])
    sms = dispatcher(script, pipeline, hooks)
    assert await sms.deliver_due() == 2
    assert await sms.deliver_due() == 0  # nothing is delivered twice
    assert script.calls == ["n1", "n2"]
    assert [(n, o.delivered, o.receipt) for n, o in outcomes] == [
        ("n1", True, "prov-1"),
        ("n2", True, None),
    ]
    stored = await rows(pipeline.database)
    assert stored["n1"].outcome == "delivered"
    assert stored["n1"].receipt == "prov-1"


async def test_transient_failures_wait_durably_then_fail_at_the_cap(
    pipeline: BatchPipeline[Repos],
    hooks: Hooks[Repos],
    outcomes: list[tuple[str, Outcome]],
    clock: ManualClock,
) -> None:
    script = Script(
        "partner:sncf",
        {"d1": [RetryLater("http_503"), RetryLater("http_503"), RetryLater("timeout")]},
    )
    await queue(pipeline, "partner:sncf", ["d1"])
    first = dispatcher(script, pipeline, hooks)
    assert await first.deliver_due() == 1
    assert await first.deliver_due() == 0  # not due yet: the next attempt waits
    row = (await rows(pipeline.database))["d1"]
    assert row.attempts == 1
    assert row.last_error == "http_503"
    assert timedelta(seconds=7) <= row.next_attempt_at - clock.now() <= timedelta(seconds=13)
    clock.advance(timedelta(seconds=15))
    # A restarted service (a new dispatcher) continues the schedule from the row.
    again = dispatcher(script, pipeline, hooks)
    assert await again.deliver_due() == 1
    clock.advance(timedelta(minutes=1))
    assert await again.deliver_due() == 1
    assert script.calls == ["d1", "d1", "d1"]
    [(name, outcome)] = outcomes
    assert name == "d1"
    assert not outcome.delivered
    assert outcome.reason == "gave_up:timeout"
    assert outcome.attempts == 3


async def test_a_permanent_failure_is_not_retried(
    pipeline: BatchPipeline[Repos], hooks: Hooks[Repos], outcomes: list[tuple[str, Outcome]]
) -> None:
    script = Script("sms", {"n": [Failed("http_400")]})
    await queue(pipeline, "sms", ["n"])
    assert await dispatcher(script, pipeline, hooks).deliver_due() == 1
    assert [(n, o.delivered, o.reason) for n, o in outcomes] == [("n", False, "http_400")]
    assert (await rows(pipeline.database))["n"].outcome == "failed"


async def test_a_hung_destination_does_not_hold_up_another(
    pipeline: BatchPipeline[Repos], hooks: Hooks[Repos], outcomes: list[tuple[str, Outcome]]
) -> None:
    hung = Blocking()
    fine = Script("email", {"e1": [Delivered()], "e2": [Delivered()]})
    await queue(pipeline, "hung", ["h1"])
    await queue(pipeline, "email", ["e1"])
    hung_loop = asyncio.create_task(dispatcher(hung, pipeline, hooks).run())
    fine_loop = asyncio.create_task(dispatcher(fine, pipeline, hooks).run())
    try:
        await asyncio.wait_for(hung.started.wait(), timeout=5)
        await queue(pipeline, "email", ["e2"])
        for _ in range(100):
            if len(outcomes) == 2:
                break
            await asyncio.sleep(0.05)
        assert [n for n, _ in outcomes] == ["e1", "e2"]
    finally:
        hung_loop.cancel()
        fine_loop.cancel()
        await asyncio.gather(hung_loop, fine_loop, return_exceptions=True)


async def test_a_round_of_hooks_is_prepared_once_then_each_hook_runs_in_order(
    pipeline: BatchPipeline[Repos], outcomes: list[tuple[str, Outcome]]
) -> None:
    hooks: Hooks[Repos] = Hooks()
    rounds: list[list[str]] = []

    @hooks.before_delivered(Sent)
    async def prepare(items: list[tuple[Sent, Outcome]], uow: UnitOfWork[Repos]) -> None:
        rounds.append([data.notification for data, _ in items])

    @hooks.delivered(Sent)
    async def sent(data: Sent, outcome: Outcome, uow: UnitOfWork[Repos]) -> None:
        outcomes.append((data.notification, outcome))

    script = Script(
        "sms", {"n1": [Delivered()], "n2": [Failed(reason="bad_number")], "n3": [Delivered()]}
    )
    await queue(pipeline, "sms", ["n1", "n2", "n3"])
    assert await dispatcher(script, pipeline, hooks).deliver_due() == 3
    assert rounds == [["n1", "n3"]]  # only the delivered ones, once for the round
    assert [n for n, _ in outcomes] == ["n1", "n3"]
    stored = await rows(pipeline.database)
    assert (stored["n1"].outcome, stored["n2"].outcome, stored["n3"].outcome) == (
        "delivered",
        "failed",
        "delivered",
    )
    assert stored["n2"].last_error == "bad_number"


async def test_only_the_dispatchers_with_new_effects_are_woken_after_a_commit(
    pipeline: BatchPipeline[Repos], hooks: Hooks[Repos]
) -> None:
    woken: list[set[str]] = []
    pipeline.on_commit = lambda uow: woken.append(set(uow.effects.destinations))
    async with pipeline.database.transaction() as session:
        uow = pipeline.unit_of_work(session)
        uow.begin_hook(case_id="c", correlation_id="corr")
        uow.dispatch(destination="sms", idempotency_key="k", payload=b"x")
        uow.end_message()
        await uow.flush()
    pipeline._committed(uow)
    async with pipeline.database.transaction() as session:
        quiet = pipeline.unit_of_work(session)
        await quiet.flush()
    pipeline._committed(quiet)
    assert woken == [{"sms"}, set()]
    assert (uow.outbox.written, quiet.outbox.written) == (0, 0)


class BatchScript(Script):
    """A destination that delivers a whole round at once (like the message-file channels)."""

    def __init__(self, name: str, answers: dict[str, list[DeliveryResult]]) -> None:
        super().__init__(name, answers)
        self.rounds: list[list[str]] = []
        self.fail_with: Exception | None = None
        self.short = False

    async def deliver_batch(self, batch: Sequence[Effect]) -> Sequence[DeliveryResult]:
        self.rounds.append([e.idempotency_key for e in batch])
        if self.fail_with is not None:
            raise self.fail_with
        results = [self.answers[e.idempotency_key].pop(0) for e in batch]
        return results[:-1] if self.short else results


async def test_a_round_destination_gets_the_round_in_one_call_and_each_outcome_is_kept(
    pipeline: BatchPipeline[Repos], hooks: Hooks[Repos], outcomes: list[tuple[str, Outcome]]
) -> None:
    script = BatchScript(
        "files", {"f1": [Delivered()], "f2": [RetryLater("file_enospc")], "f3": [Failed("bad")]}
    )
    await queue(pipeline, "files", ["f1", "f2", "f3"])
    assert await dispatcher(script, pipeline, hooks).deliver_due() == 3
    assert script.rounds == [["f1", "f2", "f3"]]
    assert script.calls == []  # never one by one
    stored = await rows(pipeline.database)
    assert (stored["f1"].outcome, stored["f2"].outcome, stored["f3"].outcome) == (
        "delivered",
        None,
        "failed",
    )
    assert stored["f2"].last_error == "file_enospc"
    assert [(n, o.delivered) for n, o in outcomes] == [("f1", True), ("f3", False)]


@pytest.mark.parametrize("trouble", ["raises", "answers_short"])
async def test_a_round_that_breaks_is_tried_again_whole(
    pipeline: BatchPipeline[Repos],
    hooks: Hooks[Repos],
    outcomes: list[tuple[str, Outcome]],
    clock: ManualClock,
    trouble: str,
) -> None:
    script = BatchScript("files", {"f1": [Delivered(), Delivered()], "f2": [Delivered()] * 2})
    if trouble == "raises":
        script.fail_with = RuntimeError("disk on fire")
    else:
        script.short = True
    await queue(pipeline, "files", ["f1", "f2"])
    files = dispatcher(script, pipeline, hooks)
    assert await files.deliver_due() == 2
    stored = await rows(pipeline.database)
    assert {stored[k].outcome for k in ("f1", "f2")} == {None}
    assert {stored[k].attempts for k in ("f1", "f2")} == {1}
    assert outcomes == []
    script.fail_with, script.short = None, False
    clock.advance(timedelta(minutes=1))
    assert await files.deliver_due() == 2
    assert [n for n, _ in outcomes] == ["f1", "f2"]
    assert len(script.rounds) == 2
