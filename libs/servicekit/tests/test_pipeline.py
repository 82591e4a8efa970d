"""The batch pipeline on a real database (SQLite and PostgreSQL): one transaction per batch,
inbox deduplication, dead letters, isolation of a poison message, retries, parking, the relay."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.db import Database
from pimms_servicekit.messages import BadMessage, Incoming, parse_json
from pimms_servicekit.outbox import OutboxBuffer, OutboxRelay, Outgoing
from pimms_servicekit.pipeline import BatchPipeline, Decoded, MessageContext
from pimms_servicekit.tables import inbox, kit_metadata, outbox, parked
from sqlalchemy import Column, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import OperationalError

effects_metadata = MetaData()
effects = Table("effects", effects_metadata, Column("id", String(50), primary_key=True))


class Notes:
    """A route that records an effect per message; its payloads say what to do."""

    def __init__(self) -> None:
        self.fail_once: set[str] = set()

    def decode(self, incoming: Incoming) -> Decoded[dict[str, Any]] | None:
        data = parse_json(incoming.value)
        if not isinstance(data, dict):
            raise BadMessage("schema_invalid", "not an object")
        if data.get("ignore"):
            return None
        return Decoded(payload=data, case_id=data.get("case"), event_type="note")

    async def handle(self, message: Decoded[dict[str, Any]], ctx: MessageContext) -> None:
        data = message.payload
        if data.get("flaky") and data["id"] in self.fail_once:
            self.fail_once.discard(data["id"])
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        if data.get("crash"):
            await ctx.session.execute(insert(effects).values(id=data["id"]))
            raise RuntimeError("a bug in this handler")
        if data.get("needs") == "profile":
            await ctx.park(key=data["case"], reason="waiting for the profile")
            return
        await ctx.session.execute(insert(effects).values(id=data["id"]))
        if data.get("profile"):
            await ctx.replay(await ctx.unpark(key=data["case"]))
        ctx.emit_marker = True  # type: ignore[attr-defined]
        ctx.send_raw(topic="out", key=data["id"], value=b"done", event_type="note.done")


def record(value: Any, *, offset: int, ce_id: str | None = None, topic: str = "in") -> Incoming:
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    headers = ((("ce_id", ce_id.encode()),) if ce_id else ()) + (("x-original", b"kept"),)
    return Incoming(
        topic=topic,
        partition=0,
        offset=offset,
        key=b"k",
        value=body,
        headers=headers,
        timestamp_ms=0,
    )


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    async with db.engine.begin() as connection:
        await connection.run_sync(kit_metadata.create_all)
        await connection.run_sync(effects_metadata.create_all)
    yield db
    await db.dispose()


@pytest.fixture
def notes() -> Notes:
    return Notes()


@pytest.fixture
def pipeline(database: Database, notes: Notes) -> BatchPipeline:
    pipe = BatchPipeline(service="test", database=database, clock=ManualClock())
    pipe.route("in", notes)
    return pipe


async def effect_ids(database: Database) -> list[str]:
    async with database.sessions() as session:
        return sorted((await session.execute(select(effects.c.id))).scalars())


async def outbox_rows(database: Database) -> list[Any]:
    async with database.sessions() as session:
        return list((await session.execute(select(outbox).order_by(outbox.c.id))).all())


async def test_a_batch_commits_together_and_bad_input_is_dead_lettered(
    pipeline: BatchPipeline, database: Database
) -> None:
    await pipeline.process_incoming(
        [
            record({"id": "a"}, offset=0, ce_id="1"),
            record(b"{oops", offset=1, ce_id="2"),
            record([1], offset=2, ce_id="3"),
            record({"id": "b"}, offset=3, ce_id="4"),
        ]
    )
    assert await effect_ids(database) == ["a", "b"]
    rows = await outbox_rows(database)
    dead = [r for r in rows if r.topic == "in.dlt"]
    assert [r.value for r in dead] == [b"{oops", b"[1]"]
    headers = dict(dead[0].headers)
    assert "pimms_dlt_reason" in headers
    assert [r.topic for r in rows if r.topic == "out"] == ["out", "out"]


async def test_dead_letters_keep_the_original_and_say_why(
    pipeline: BatchPipeline, database: Database
) -> None:
    await pipeline.process_incoming([record(b"{oops", offset=7, ce_id="x")])
    relay_rows: list[Outgoing] = []
    relay = OutboxRelay(
        database=database, sender=_Collect(relay_rows), clock=ManualClock(), source="t"
    )
    await relay.drain()
    [message] = relay_rows
    headers = dict(message.headers)
    assert message.topic == "in.dlt"
    assert message.key == b"k"
    assert message.value == b"{oops"
    assert headers["x-original"] == b"kept"
    assert headers["pimms_dlt_reason"] == b"not_json"
    assert headers["pimms_dlt_service"] == b"test"
    assert headers["pimms_dlt_original_topic"] == b"in"
    assert headers["pimms_dlt_original_partition"] == b"0"
    assert headers["pimms_dlt_original_offset"] == b"7"
    assert b"JSON" in headers["pimms_dlt_error"]
    assert headers["pimms_dlt_failed_at"].startswith(b"2026-")


async def test_a_redelivered_message_has_no_second_effect(
    pipeline: BatchPipeline, database: Database
) -> None:
    await pipeline.process_incoming([record({"id": "a"}, offset=0, ce_id="1")])
    await pipeline.process_incoming(
        [record({"id": "a"}, offset=0, ce_id="1"), record({"id": "a"}, offset=0, ce_id="1")]
    )
    assert await effect_ids(database) == ["a"]
    assert len([r for r in await outbox_rows(database) if r.topic == "out"]) == 1
    assert pipeline.stats.duplicates == 2


async def test_a_poison_message_is_isolated_and_the_others_still_commit(
    pipeline: BatchPipeline, database: Database
) -> None:
    await pipeline.process(
        [
            _consumer_record({"id": "a"}, 0, "1"),
            _consumer_record({"id": "boom", "crash": True}, 1, "2"),
            _consumer_record({"id": "c"}, 2, "3"),
        ]
    )
    assert await effect_ids(database) == ["a", "c"]  # the crash's partial write was rolled back
    [dead] = [r for r in await outbox_rows(database) if r.topic == "in.dlt"]
    assert dict(dead.headers)["pimms_dlt_reason"] == "cHJvY2Vzc2luZ19lcnJvcg=="  # base64 in storage
    assert pipeline.stats.isolated_batches == 1
    async with database.sessions() as session:
        outcomes = dict((await session.execute(select(inbox.c.message_id, inbox.c.outcome))).all())
    assert outcomes == {"1": "handled", "2": "dead_lettered", "3": "handled"}


async def test_a_transient_database_failure_is_retried_not_dead_lettered(
    pipeline: BatchPipeline, database: Database, notes: Notes
) -> None:
    notes.fail_once.add("f")
    await pipeline.process_incoming([record({"id": "f", "flaky": True}, offset=0, ce_id="1")])
    assert await effect_ids(database) == ["f"]
    assert pipeline.stats.transient_failures == 1
    assert [r for r in await outbox_rows(database) if r.topic == "in.dlt"] == []


async def test_a_parked_message_is_replayed_when_what_it_needs_arrives(
    pipeline: BatchPipeline, database: Database
) -> None:
    await pipeline.process_incoming(
        [record({"id": "early", "case": "c1", "needs": "profile"}, offset=0, ce_id="1")]
    )
    assert await effect_ids(database) == []
    await pipeline.process_incoming(
        [record({"id": "profile", "case": "c1", "profile": True}, offset=1, ce_id="2")]
    )
    assert await effect_ids(database) == [
        "profile"
    ]  # the replayed one parks no more? it asks again
    async with database.sessions() as session:
        still = (await session.execute(select(func.count()).select_from(parked))).scalar_one()
        outcome = (
            await session.execute(select(inbox.c.outcome).where(inbox.c.message_id == "1"))
        ).scalar_one()
    assert still == 1  # it needed a profile and asked again: parked once more, not lost
    assert outcome == "parked"


async def test_messages_for_no_one_are_ignored(pipeline: BatchPipeline, database: Database) -> None:
    await pipeline.process_incoming([record({"ignore": True}, offset=0, ce_id="1")])
    assert await outbox_rows(database) == []


class _Collect:
    def __init__(self, into: list[Outgoing], fail_at: int | None = None) -> None:
        self.into = into
        self.fail_at = fail_at

    async def send(self, messages: Sequence[Outgoing]) -> tuple[int, BaseException | None]:
        for index, message in enumerate(messages):
            if self.fail_at is not None and len(self.into) == self.fail_at:
                self.fail_at = None
                return index, ConnectionError("broker gone")
            self.into.append(message)
        return len(messages), None


async def test_the_relay_publishes_in_order_and_resumes_after_a_failure(database: Database) -> None:
    clock = ManualClock()
    async with database.transaction() as session:
        buffer = OutboxBuffer(source="t", clock=clock)
        for n in range(5):
            buffer.raw(topic="out", key="k", value=str(n).encode(), case_id=None, event_type="n")
        await buffer.flush(session)
    sent: list[Outgoing] = []
    relay = OutboxRelay(
        database=database, sender=_Collect(sent, fail_at=3), clock=clock, source="t"
    )
    with pytest.raises(Exception, match="after 3"):
        await relay.drain()
    assert [m.value for m in sent] == [b"0", b"1", b"2"]
    await relay.drain()
    assert [m.value for m in sent] == [b"0", b"1", b"2", b"3", b"4"]
    assert all(r.sent_at is not None for r in await outbox_rows(database))


async def test_on_sent_hooks_run_when_the_row_is_published(database: Database) -> None:
    clock = ManualClock()
    async with database.transaction() as session:
        buffer = OutboxBuffer(source="t", clock=clock)
        buffer.raw(
            topic="partner",
            key="r1",
            value=b"payload",
            case_id="c1",
            event_type="p",
            on_sent={"hook": "delivered", "referral": "r1"},
        )
        await buffer.flush(session)
    seen: list[dict[str, Any]] = []

    async def delivered(
        session: Any, follow_ups: OutboxBuffer, data: dict[str, Any], at: Any
    ) -> None:
        seen.append(data)
        follow_ups.raw(topic="reports", key="c1", value=b"delivered", case_id="c1", event_type="d")

    sent: list[Outgoing] = []
    relay = OutboxRelay(
        database=database,
        sender=_Collect(sent),
        clock=clock,
        source="t",
        hooks={"delivered": delivered},
    )
    await relay.drain()
    assert seen == [{"hook": "delivered", "referral": "r1"}]
    assert [m.topic for m in sent] == ["partner", "reports"]


def _consumer_record(value: Any, offset: int, ce_id: str) -> Any:
    from aiokafka.structs import ConsumerRecord

    body = json.dumps(value).encode()
    return ConsumerRecord(
        topic="in",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=body,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(body),
        headers=[("ce_id", ce_id.encode())],
    )
