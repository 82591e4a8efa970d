"""Housekeeping on SQLite and PostgreSQL: old kit rows are purged in small batches, recent ones
kept; a message parked longer than the bound is dead-lettered `parked_too_long` and the service's
hook hears of it (time moved by a ManualClock)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_servicekit.clock import ManualClock, SteeredClock
from pimms_servicekit.db import Database
from pimms_servicekit.housekeeping import (
    Housekeeper,
    Retention,
    purge,
    retention_from_env,
)
from pimms_servicekit.messages import Incoming, headers_from_json, parse_json
from pimms_servicekit.parking import ExpiredParking
from pimms_servicekit.pipeline import BatchPipeline
from pimms_servicekit.routing import Decoded, Handlers
from pimms_servicekit.settings import SettingsError
from pimms_servicekit.tables import effects, inbox, outbox, parked
from pimms_servicekit.unit_of_work import UnitOfWork
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession


class Report(dict[str, Any]):
    """A partner's status report that needs its dossier first."""


class Repos:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


def decode(incoming: Incoming) -> Decoded[Report]:
    data = parse_json(incoming.value)
    return Decoded(payload=Report(data), case_id=data["case"], event_type="report")


handles: Handlers[Repos] = Handlers()


@handles(Report)
async def wait_for_dossier(report: Report, uow: UnitOfWork[Repos]) -> None:
    await uow.park(key=report["case"], reason="waiting for the dossier")


def report(case: str, *, offset: int) -> Incoming:
    return Incoming(
        topic="partner.responses",
        partition=1,
        offset=offset,
        key=case.encode(),
        value=json.dumps({"case": case}).encode(),
        headers=(("ce_id", f"report-{case}".encode()), ("x-partner", b"edf")),
        timestamp_ms=0,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def pipeline(database: Database, clock: ManualClock) -> BatchPipeline[Repos]:
    pipe = BatchPipeline(
        service="gateway", database=database, clock=clock, handlers=handles, repositories=Repos
    )
    pipe.consume("partner.responses", decode)
    return pipe


def housekeeper(
    pipeline: BatchPipeline[Repos],
    *,
    retention: Retention,
    heard: list[ExpiredParking] | None = None,
) -> Housekeeper:
    async def in_unit_of_work(work: Any) -> None:
        async with pipeline.database.transaction() as session:
            uow = pipeline.unit_of_work(session)
            uow.begin_hook(case_id=None, correlation_id=None)
            await work(uow)
            uow.end_message()
            await uow.flush()

    async def tell(expired: ExpiredParking, uow: UnitOfWork[Any]) -> None:
        assert heard is not None
        heard.append(expired)
        uow.publish(
            topic="mediator.alerts",
            key=expired.case_id,
            value=b"report without dossier",
            event_type="alert",
        )

    return Housekeeper(
        database=pipeline.database,
        clock=pipeline.clock,
        retention=retention,
        in_unit_of_work=in_unit_of_work,
        on_parked_expired=lambda: tell if heard is not None else None,
    )


async def counts(database: Database) -> dict[str, int]:
    async with database.sessions() as session:
        found = {}
        for table in (inbox, outbox, effects, parked):
            query = select(func.count()).select_from(table)
            found[table.name] = (await session.execute(query)).scalar_one()
        return found


async def seed(database: Database, clock: ManualClock, *, age: timedelta, n: int) -> None:
    """`n` inbox rows, sent outbox rows, done effects; plus one unsent and one undone each."""
    at = clock.now() - age
    async with database.transaction() as session:
        await session.execute(
            insert(inbox),
            [
                {
                    "consumer": "gateway",
                    "message_id": f"m-{age.days}-{i}",
                    "topic": "t",
                    "partition": 0,
                    "offset": i,
                    "outcome": "handled",
                    "processed_at": at,
                }
                for i in range(n)
            ],
        )
        rows = [
            {"topic": "t", "headers": [], "created_at": at, "sent_at": at if i < n else None}
            for i in range(n + 1)
        ]
        await session.execute(insert(outbox), rows)
        await session.execute(
            insert(effects),
            [
                {
                    "destination": "sms",
                    "idempotency_key": f"e-{i}",
                    "payload": b"x",
                    "attempts": 1,
                    "next_attempt_at": at,
                    "created_at": at,
                    "done_at": at if i < n else None,
                }
                for i in range(n + 1)
            ],
        )


async def test_old_rows_are_purged_in_small_batches_and_recent_ones_kept(
    database: Database, clock: ManualClock, database_url: str
) -> None:
    await seed(database, clock, age=timedelta(days=10), n=1234)
    await seed(database, clock, age=timedelta(days=1), n=7)
    before = await counts(database)
    retention = Retention(batch_size=200, pause_s=0)
    purged = await purge(database, retention=retention, now=clock.now())
    after = await counts(database)
    backend = database_url.split(":", maxsplit=1)[0]
    print(f"\nhousekeeping on {backend}: before {before}, after {after}")
    assert before == {"kit_inbox": 1241, "kit_outbox": 1243, "kit_effects": 1243, "kit_parked": 0}
    assert purged.counts == {"inbox": 1234, "outbox": 1234, "effects": 1234}
    # What is recent stays; what was never sent or delivered stays whatever its age.
    assert after == {"kit_inbox": 7, "kit_outbox": 9, "kit_effects": 9, "kit_parked": 0}
    again = await purge(database, retention=retention, now=clock.now())
    assert again.total == 0


async def test_the_inbox_outlives_the_outbox_by_default() -> None:
    retention = retention_from_env({})
    assert retention.inbox > timedelta(days=7) > retention.outbox  # Kafka keeps 7 days
    assert retention.parked_max == timedelta(hours=24)
    custom = retention_from_env({"PIMMS_RETENTION_INBOX_DAYS": "30", "PIMMS_PARKED_MAX_HOURS": "2"})
    assert custom.inbox == timedelta(days=30)
    assert custom.parked_max == timedelta(hours=2)
    with pytest.raises(SettingsError, match="PIMMS_RETENTION_OUTBOX_DAYS"):
        retention_from_env({"PIMMS_RETENTION_OUTBOX_DAYS": "-1"})


async def test_a_report_parked_too_long_is_dead_lettered_and_the_hook_is_told(
    pipeline: BatchPipeline[Repos], database: Database, clock: ManualClock
) -> None:
    await pipeline.process_incoming([report("case-old", offset=1)])
    clock.advance(timedelta(hours=20))
    await pipeline.process_incoming([report("case-new", offset=2)])
    heard: list[ExpiredParking] = []
    keeper = housekeeper(pipeline, retention=Retention(pause_s=0), heard=heard)

    clock.advance(timedelta(hours=3, minutes=59))  # 23 h 59 min: nothing is too old yet
    assert await keeper.expire_parked() == 0
    clock.advance(timedelta(minutes=2))
    expired, _ = await keeper.run_once()

    assert expired == 1
    assert [(h.case_id, h.park_key, h.reason) for h in heard] == [
        ("case-old", "case-old", "waiting for the dossier")
    ]
    async with database.sessions() as session:
        still = (await session.execute(select(parked.c.park_key))).scalars().all()
        rows = (
            await session.execute(select(outbox).where(outbox.c.topic != "t").order_by(outbox.c.id))
        ).all()
        outcome = (
            await session.execute(
                select(inbox.c.outcome).where(inbox.c.message_id == "report-case-old")
            )
        ).scalar_one()
    assert still == ["case-new"]
    assert outcome == "dead_lettered"  # `pimms dead-letters replay` processes it again
    assert [r.topic for r in rows] == [topics.dead_letters("partner.responses"), "mediator.alerts"]
    dead = rows[0]
    headers = dict(headers_from_json(dead.headers))
    assert dead.key == b"case-old"
    assert json.loads(dead.value) == {"case": "case-old"}
    assert headers["x-partner"] == b"edf"
    assert headers[topics.DLT_REASON] == b"parked_too_long"
    assert headers[topics.DLT_ORIGINAL_TOPIC] == b"partner.responses"
    assert headers[topics.DLT_ORIGINAL_PARTITION] == b"1"
    assert headers[topics.DLT_ORIGINAL_OFFSET] == b"1"
    assert headers[topics.DLT_SERVICE] == b"gateway"
    assert b"waiting for the dossier" in headers[topics.DLT_ERROR]
    assert dead.case_id == "case-old"
    assert await keeper.expire_parked() == 0  # once only


async def test_a_parked_message_released_in_time_is_not_dead_lettered(
    pipeline: BatchPipeline[Repos], database: Database, clock: ManualClock
) -> None:
    await pipeline.process_incoming([report("case-1", offset=1)])
    async with database.transaction() as session:
        uow = pipeline.unit_of_work(session)
        uow.begin_hook(case_id=None, correlation_id=None)
        released: Sequence[Incoming] = await _unpark(session, "case-1")
        uow.end_message()
    assert len(released) == 1
    clock.advance(timedelta(days=2))
    keeper = housekeeper(pipeline, retention=Retention(pause_s=0))
    expired, _ = await keeper.run_once()
    assert expired == 0
    assert (await counts(database))["kit_outbox"] == 0


async def _unpark(session: AsyncSession, key: str) -> list[Incoming]:
    from pimms_servicekit.parking import unpark

    return await unpark(session, key=key)


async def test_on_a_steered_clock_what_was_processed_is_kept_for_real_days() -> None:
    """Rows carry platform time, redeliveries come in real time: at x43,200 the inbox must not
    forget a message 16 real seconds after it (8 platform days)."""
    start = datetime(2026, 11, 27, 9, tzinfo=UTC)
    steered = SteeredClock(start, anchor=0.0, scale=43_200, real_time=lambda: 0.0)

    async def never(work: Any) -> None:
        raise AssertionError("not called")

    keeper = Housekeeper(
        database=None,  # type: ignore[arg-type]
        clock=steered,
        retention=Retention(),
        in_unit_of_work=never,
    )
    kept = keeper._on_platform_time()
    assert kept.inbox == timedelta(days=36_500)  # 8 days x 43,200, capped to stay a date
    assert kept.parked_max == timedelta(hours=24)  # waiting for data is platform time
    real = Housekeeper(
        database=None,  # type: ignore[arg-type]
        clock=ManualClock(start),
        retention=Retention(),
        in_unit_of_work=never,
    )
    assert real._on_platform_time() == Retention()
