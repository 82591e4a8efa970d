"""The batch pipeline on a real database (SQLite and PostgreSQL): one transaction per batch,
inbox deduplication, dead letters, isolation of a poison message, retries, parking, the relay."""

from __future__ import annotations

import base64
import gc
import json
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import pytest
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.db import Database
from pimms_servicekit.hooks import Hook, Hooks, Outcome
from pimms_servicekit.messages import (
    BadMessage,
    Incoming,
    headers_from_json,
    headers_to_json,
    parse_json,
)
from pimms_servicekit.outbox import OutboxBuffer, OutboxRelay, Outgoing
from pimms_servicekit.pipeline import BatchPipeline
from pimms_servicekit.routing import Decoded, Handlers
from pimms_servicekit.tables import inbox, kit_metadata, outbox, parked
from pimms_servicekit.unit_of_work import UnitOfWork
from sqlalchemy import Column, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

effects_metadata = MetaData()
effects = Table("effects", effects_metadata, Column("id", String(50), primary_key=True))


class NoteRepos:
    """The test service's repositories: one table of effects."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.prefetched: list[int] = []

    async def prefetch(self, payloads: Sequence[object]) -> None:
        self.prefetched.append(len(payloads))

    async def add(self, effect_id: str) -> None:
        await self.session.execute(insert(effects).values(id=effect_id))


class Note(dict[str, Any]):
    """A decoded test message: its fields say what to do."""


class Notes:
    """A decoder and a handler that record an effect per message."""

    def __init__(self) -> None:
        self.fail_once: set[str] = set()
        self.handles: Handlers[NoteRepos] = Handlers()
        self.handles(Note)(self.handle)

    def __call__(self, incoming: Incoming) -> Decoded[Note] | None:
        data = parse_json(incoming.value)
        if not isinstance(data, dict):
            raise BadMessage("schema_invalid", "not an object")
        if data.get("ignore"):
            return None
        return Decoded(payload=Note(data), case_id=data.get("case"), event_type="note")

    async def handle(self, data: Note, uow: UnitOfWork[NoteRepos]) -> None:
        if data.get("flaky") and data["id"] in self.fail_once:
            self.fail_once.discard(data["id"])
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        if data.get("crash"):
            await uow.repos.add(data["id"])
            raise RuntimeError("a bug in this handler")
        if data.get("needs") == "profile":
            await uow.park(key=data["case"], reason="waiting for the profile")
            return
        await uow.repos.add(data["id"])
        if data.get("profile"):
            await uow.release(key=data["case"])
        uow.publish(topic="out", key=data["id"], value=b"done", event_type="note.done")


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
def pipeline(database: Database, notes: Notes) -> BatchPipeline[NoteRepos]:
    pipe = BatchPipeline(
        service="test",
        database=database,
        clock=ManualClock(),
        handlers=notes.handles,
        repositories=NoteRepos,
    )
    pipe.consume("in", notes)
    return pipe


async def effect_ids(database: Database) -> list[str]:
    async with database.sessions() as session:
        return sorted((await session.execute(select(effects.c.id))).scalars())


async def outbox_rows(database: Database) -> list[Any]:
    async with database.sessions() as session:
        return list((await session.execute(select(outbox).order_by(outbox.c.id))).all())


async def test_a_batch_commits_together_and_bad_input_is_dead_lettered(
    pipeline: BatchPipeline[NoteRepos], database: Database
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
    headers = dict(headers_from_json(dead[0].headers))
    assert "pimms_dlt_reason" in headers
    assert [r.topic for r in rows if r.topic == "out"] == ["out", "out"]


async def test_dead_letters_keep_the_original_and_say_why(
    pipeline: BatchPipeline[NoteRepos], database: Database
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
    pipeline: BatchPipeline[NoteRepos], database: Database
) -> None:
    await pipeline.process_incoming([record({"id": "a"}, offset=0, ce_id="1")])
    await pipeline.process_incoming(
        [record({"id": "a"}, offset=0, ce_id="1"), record({"id": "a"}, offset=0, ce_id="1")]
    )
    assert await effect_ids(database) == ["a"]
    assert len([r for r in await outbox_rows(database) if r.topic == "out"]) == 1
    assert pipeline.stats.duplicates == 2


async def test_a_poison_message_is_isolated_and_the_others_still_commit(
    pipeline: BatchPipeline[NoteRepos], database: Database
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
    assert dict(headers_from_json(dead.headers))["pimms_dlt_reason"] == b"processing_error"
    assert pipeline.stats.isolated_batches == 1
    async with database.sessions() as session:
        outcomes = dict((await session.execute(select(inbox.c.message_id, inbox.c.outcome))).all())
    assert outcomes == {"1": "handled", "2": "dead_lettered", "3": "handled"}


async def test_a_transient_database_failure_is_retried_not_dead_lettered(
    pipeline: BatchPipeline[NoteRepos], database: Database, notes: Notes
) -> None:
    notes.fail_once.add("f")
    await pipeline.process_incoming([record({"id": "f", "flaky": True}, offset=0, ce_id="1")])
    assert await effect_ids(database) == ["f"]
    assert pipeline.retrier.transient_failures == 1
    assert [r for r in await outbox_rows(database) if r.topic == "in.dlt"] == []


async def test_a_parked_message_is_replayed_when_what_it_needs_arrives(
    pipeline: BatchPipeline[NoteRepos], database: Database
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


async def test_messages_for_no_one_are_ignored(
    pipeline: BatchPipeline[NoteRepos], database: Database
) -> None:
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


class Delivered(Hook):
    name: ClassVar[str] = "delivered"
    referral: str


async def test_typed_hooks_run_when_the_row_is_published(database: Database) -> None:
    clock = ManualClock()
    hooks: Hooks[NoteRepos] = Hooks()
    seen: list[tuple[str, bool]] = []

    @hooks.delivered(Delivered)
    async def delivered(data: Delivered, outcome: Outcome, uow: UnitOfWork[NoteRepos]) -> None:
        seen.append((data.referral, outcome.delivered))
        uow.publish(topic="reports", key="c1", value=b"delivered", event_type="d")

    pipe: BatchPipeline[NoteRepos] = BatchPipeline(
        service="t", database=database, clock=clock, handlers=Handlers(), repositories=NoteRepos
    )
    async with database.transaction() as session:
        uow = pipe.unit_of_work(session)
        uow.begin_hook(case_id="c1", correlation_id="corr")
        uow.publish(
            topic="partner",
            key="r1",
            value=b"payload",
            event_type="p",
            hook=Delivered(referral="r1"),
        )
        uow.end_message()
        await uow.flush()
    sent: list[Outgoing] = []
    relay = OutboxRelay(
        database=database,
        sender=_Collect(sent),
        clock=clock,
        source="t",
        hooks=hooks,
        make_uow=pipe.unit_of_work,
    )
    await relay.drain()
    assert seen == [("r1", True)]
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


async def test_hostile_ids_and_headers_never_stall_the_batch(
    pipeline: BatchPipeline[NoteRepos], database: Database
) -> None:
    """A NUL byte (PostgreSQL refuses it in text) in the ce_id, a huge id, bad UTF-8 headers."""
    hostile = [
        record({"id": "nul"}, offset=0, ce_id="id-with-\x00-nul"),
        record({"id": "long"}, offset=1, ce_id="x" * 5000),
        Incoming(
            topic="in",
            partition=0,
            offset=2,
            key=b"\x00\xff",
            value=b"\x00not json",
            headers=(("ce_id", b"\xff\xfe\x00"), ("ce_type", b"\x00\x01")),
            timestamp_ms=0,
        ),
        record({"id": "after"}, offset=3, ce_id="ok-1"),
    ]
    await pipeline.process_incoming(hostile)
    await pipeline.process_incoming(hostile)  # redelivered: recognised, no second effect
    assert await effect_ids(database) == ["after", "long", "nul"]
    dead = [r for r in await outbox_rows(database) if r.topic == "in.dlt"]
    assert len(dead) == 1
    assert pipeline.stats.isolated_batches == 0
    async with database.sessions() as session:
        stored = sorted((await session.execute(select(inbox.c.message_id))).scalars())
    assert all("\x00" not in m and len(m) <= 300 for m in stored)
    assert sum(m.startswith("sha256:") for m in stored) == 2


async def test_a_replayed_dead_letter_is_processed_once(
    pipeline: BatchPipeline[NoteRepos], database: Database, notes: Notes
) -> None:
    # First seen while a bug made it crash: dead-lettered.
    await pipeline.process_incoming([record({"id": "r", "crash": True}, offset=0, ce_id="m1")])
    assert await effect_ids(database) == []
    fixed = record({"id": "r"}, offset=5, ce_id="m1")
    replay = Incoming(
        topic=fixed.topic,
        partition=0,
        offset=9,
        key=fixed.key,
        value=fixed.value,
        headers=(*fixed.headers, ("pimms_replay_of", b"in.dlt:0:0")),
        timestamp_ms=0,
    )
    await pipeline.process_incoming([fixed])  # a plain redelivery stays a duplicate
    assert await effect_ids(database) == []
    await pipeline.process_incoming([replay])
    await pipeline.process_incoming([replay])  # replaying twice has one effect
    assert await effect_ids(database) == ["r"]
    async with database.sessions() as session:
        outcome = (
            await session.execute(select(inbox.c.outcome).where(inbox.c.message_id == "m1"))
        ).scalar_one()
    assert outcome == "handled"


async def test_events_continue_the_trace_of_their_cause_and_partner_feeds_carry_none(
    pipeline: BatchPipeline[NoteRepos], database: Database
) -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from pimms_contracts.v1.frontoffice import NeedAccepted

    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    plain = record({"id": "u"}, offset=1, ce_id="u1")
    traced = Incoming(
        topic=plain.topic,
        partition=0,
        offset=0,
        key=plain.key,
        value=plain.value,
        headers=(*plain.headers, ("traceparent", parent.encode())),
        timestamp_ms=0,
    )
    async with database.transaction() as session:
        uow = pipeline.unit_of_work(session)
        for incoming, correlation in ((traced, None), (plain, str(uuid4()))):
            uow.begin_message(incoming, case_id=None, correlation_id=correlation, event_type=None)
            event = NeedAccepted(
                submission_id="s",
                case_id=uuid4(),
                case_reference="LYON8-2026-000001",
                accepted_at=datetime.now(UTC),
            )
            uow.emit(event, topic="events", key="k")
            uow.publish(topic="partner", key="k", value=b"payload alone", event_type="p")
            uow.end_message()
        await uow.flush()
    rows = await outbox_rows(database)
    parents = [
        v.decode()
        for r in rows
        if r.topic == "events"
        for n, v in headers_from_json(r.headers)
        if n == "traceparent"
    ]
    assert len(parents) == 2
    assert parents[0].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert parents[0] != parent  # a new span of the same trace
    assert not parents[1].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert all(len(p.split("-")[1]) == 32 for p in parents)
    assert all(r.headers == [] for r in rows if r.topic == "partner")


def test_stored_headers_keep_the_exact_bytes_and_rows_of_the_old_format_still_read() -> None:
    headers = [
        ("ce_id", b"3f6c-plain-text"),
        ("x-bytes", b"\xff\xfe not utf-8"),
        ("x-nul", b"a\x00b"),
        ("x-empty", b""),
    ]
    stored = headers_to_json(headers)
    assert stored[0] == ["ce_id", "3f6c-plain-text", "t"]  # text as is, no base64
    assert all(len(entry) == 2 for entry in stored[1:3])  # what a database refuses: base64
    assert headers_from_json(json.loads(json.dumps(stored))) == headers
    old_rows = [["ce_id", base64.b64encode(b"3f6c").decode()]]
    assert headers_from_json(old_rows) == [("ce_id", b"3f6c")]


@pytest.mark.parametrize(
    "values",
    [
        [{"id": "a", "case": "c1"}],
        [{"id": "p", "case": "c2", "needs": "profile"}],
        [{"id": "p", "case": "c2", "needs": "profile"}, {"id": "b", "case": "c2", "profile": True}],
        [b"not json"],
    ],
)
async def test_a_batch_leaves_no_reference_cycle(
    pipeline: BatchPipeline[NoteRepos], values: list[Any]
) -> None:
    """Once committed, a batch's unit of work is freed at once: a cycle through it kept every
    batch's rows and events until a full collection, which a long backlog hardly ever gets
    (RSS grew by about 5 MB per 10,000 needs)."""
    await pipeline.process_incoming([record({"id": "warm-up"}, offset=0)])
    made: list[weakref.ref[UnitOfWork[Any]]] = []
    build = pipeline.unit_of_work

    def unit_of_work(session: AsyncSession) -> UnitOfWork[Any]:
        uow = build(session)
        made.append(weakref.ref(uow))
        return uow

    pipeline.unit_of_work = unit_of_work  # type: ignore[method-assign]
    gc.collect()
    gc.disable()
    try:
        await pipeline.process_incoming(
            [record(value, offset=n) for n, value in enumerate(values, start=1)]
        )
        alive = [ref() for ref in made if ref() is not None]
    finally:
        gc.enable()
    assert made, "the batch ran in a unit of work"
    assert alive == []  # the batch's own: another test's may still wait for a collection
