"""The relay publishes what this process just committed without reading it back, and the
database stays the truth: rows it does not hold in memory (another instance's, rows beyond the
cap, rows before a restart) are read from the outbox table, in id order."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pimms_servicekit import outbox as outbox_module
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.db import Database
from pimms_servicekit.outbox import OutboxBuffer, OutboxRelay, Outgoing, Pending
from pimms_servicekit.tables import outbox
from pimms_servicekit.testing import executed_statements
from sqlalchemy import delete, select


class Collect:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def send(self, messages: Sequence[Outgoing]) -> tuple[int, BaseException | None]:
        self.sent.extend(messages)
        return len(messages), None


async def commit(database: Database, *values: bytes, flushes: int = 1) -> list[Pending]:
    """Commit outbox rows as a unit of work does; what it would hand to the relay."""
    buffer = OutboxBuffer(source="urn:test", clock=ManualClock())
    async with database.transaction() as session:
        for part in range(flushes):
            for value in values[part::flushes]:
                buffer.raw(
                    topic="out",
                    key=value,
                    value=value,
                    headers=[("h", value), ("bin", b"\x00\xff")],
                    case_id=None,
                    event_type="t",
                )
            await buffer.flush(session)
    return buffer.flushed


async def stored(database: Database) -> list[tuple[int, bytes]]:
    async with database.sessions() as session:
        rows = await session.execute(select(outbox.c.id, outbox.c.value).order_by(outbox.c.id))
        return [(r.id, r.value) for r in rows]


async def test_the_ids_handed_over_are_the_rows_ids(database: Database) -> None:
    first = await commit(database, b"a", b"b", b"c")
    async with database.transaction() as session:  # housekeeping purged the newest row
        await session.execute(delete(outbox).where(outbox.c.value == b"c"))
    second = await commit(database, b"d", b"e", b"f", b"g", flushes=2)
    assert [(p.message.id, p.message.value) for p in first if p.message.value != b"c"] == [
        row for row in await stored(database) if row[1] in (b"a", b"b")
    ]
    assert sorted((p.message.id, p.message.value) for p in second) == [
        row for row in await stored(database) if row[1] in (b"d", b"e", b"f", b"g")
    ]
    assert second[0].message.headers == [("h", b"d"), ("bin", b"\x00\xff")]


async def test_batches_of_every_size_are_written_by_the_same_statements(
    database: Database,
) -> None:
    """A statement text per batch size was a prepared statement per size in every connection
    (up to 1,000 rows of 11 parameters each on PostgreSQL); the ids still follow the rows."""
    handed: list[Pending] = []
    with executed_statements(database.engine) as executed:
        for size in range(1, 31):
            handed += await commit(database, *(f"{size}-{n}".encode() for n in range(size)))
    texts = {statement for statement in executed if "kit_outbox" in statement}
    # The batch's ids (the largest id on SQLite), then the rows: on PostgreSQL one text for a
    # single row and one for more (arrays, see BulkInsert).
    assert len(texts) == (2 if database.is_sqlite else 3)
    assert [(p.message.id, p.message.value) for p in handed] == await stored(database)
    ids = [p.message.id for p in handed]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids) == 465


async def test_committed_rows_are_published_without_reading_their_content_back(
    database: Database,
) -> None:
    sender = Collect()
    relay = OutboxRelay(database=database, sender=sender, clock=ManualClock(), source="t")
    relay.offer(await commit(database, b"a", b"b"))
    with executed_statements(database.engine) as statements:
        assert await relay.drain() == 2
    assert [m.value for m in sender.sent] == [b"a", b"b"]
    assert not [s for s in statements if s.lstrip().upper().startswith("SELECT") and "value" in s]
    assert len(await stored(database)) == 2  # the rows stay, marked sent
    async with database.sessions() as session:
        pending = await session.execute(select(outbox.c.id).where(outbox.c.sent_at.is_(None)))
        assert pending.all() == []


async def test_rows_it_does_not_hold_are_read_from_the_table_in_id_order(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "COMMITTED_CACHE_MAX", 2)
    before_restart = await commit(database, b"a", b"b")  # never offered: a restart
    other_instance = await commit(database, b"c")  # committed elsewhere: never offered here
    sender = Collect()
    relay = OutboxRelay(database=database, sender=sender, clock=ManualClock(), source="t")
    relay.offer(await commit(database, b"d", b"e", b"f"))  # beyond the cap: f is not kept
    assert await relay.drain() == 6
    assert [m.value for m in sender.sent] == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert [m.headers for m in sender.sent][2] == [("h", b"c"), ("bin", b"\x00\xff")]
    assert len(before_restart) + len(other_instance) == 3


async def test_rows_another_instance_sent_are_forgotten(database: Database) -> None:
    sender = Collect()
    relay = OutboxRelay(database=database, sender=sender, clock=ManualClock(), source="t")
    relay.offer(await commit(database, b"a", b"b"))
    other = OutboxRelay(database=database, sender=Collect(), clock=ManualClock(), source="t")
    assert await other.drain() == 2  # the other instance led meanwhile and sent them
    relay.offer(await commit(database, b"c"))
    assert await relay.drain() == 1
    assert [m.value for m in sender.sent] == [b"c"]
    assert list(relay._committed) == []
