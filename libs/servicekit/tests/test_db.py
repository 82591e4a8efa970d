"""The database's connection kinds: write transactions, reads without one, single statements,
what happens when the server drops a pooled connection, and IN lists of a few lengths."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pimms_servicekit.db import (
    IN_LIST_MAX,
    BulkInsert,
    BulkUpdate,
    Database,
    chunks,
    in_chunks,
    padded,
)
from pimms_servicekit.errors import is_transient
from pimms_servicekit.inbox import InboxBatch
from pimms_servicekit.tables import outbox, trace_keys
from pimms_servicekit.testing import executed_statements
from sqlalchemy import func, insert, select, text, update


def _row(topic: str) -> dict[str, object]:
    return {
        "topic": topic,
        "key": b"k",
        "value": b"{}",
        "headers": [],
        "created_at": datetime.now(UTC),
        "sent_at": None,
    }


async def _driver_in_transaction(connection: object) -> bool:
    raw = await connection.get_raw_connection()  # type: ignore[attr-defined]
    return bool(raw.driver_connection.is_in_transaction())


async def test_a_read_does_not_wait_for_a_writer(database: Database) -> None:
    """The relay reads pending ids while a batch holds the write lock (SQLite's BEGIN IMMEDIATE,
    a PostgreSQL transaction): it sees what was committed, at once."""
    async with database.transaction() as session:
        await session.execute(insert(outbox), [_row("committed")])
    async with database.transaction() as writer:
        await writer.execute(insert(outbox), [_row("uncommitted")])
        async with database.reading() as connection:
            topics = await asyncio.wait_for(
                connection.execute(select(outbox.c.topic).order_by(outbox.c.id)), timeout=5
            )
            assert list(topics.scalars()) == ["committed"]
            if not database.is_sqlite:
                assert not await _driver_in_transaction(connection)  # no BEGIN, no ROLLBACK


async def test_a_single_statement_is_committed_when_it_returns(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(insert(outbox), [_row("a"), _row("b")])
    now = datetime.now(UTC)
    async with database.single_statement() as connection:
        await connection.execute(update(outbox).where(outbox.c.topic == "a").values(sent_at=now))
        if not database.is_sqlite:
            assert not await _driver_in_transaction(connection)  # autocommit: already stored
    async with database.reading() as connection:
        sent = await connection.execute(select(outbox.c.topic).where(outbox.c.sent_at.is_not(None)))
        assert list(sent.scalars()) == ["a"]


async def test_a_dropped_connection_fails_once_as_transient_then_the_pool_is_fresh(
    database: Database,
) -> None:
    """No ping before each checkout: a connection the server dropped fails on use with a
    transient error (the batch is retried), and every older pooled connection is replaced."""
    if database.is_sqlite:
        pytest.skip("a PostgreSQL server drops connections")
    pids = set()
    async with database.transaction() as first, database.transaction() as second:
        for session in (first, second):  # two connections in the pool
            pids.add((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
    admin = Database(database.url.render_as_string(hide_password=False))
    async with admin.single_statement() as connection:  # not one of the pool's connections
        for pid in pids:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await admin.dispose()
    errors: list[BaseException] = []
    for _ in range(4):
        try:
            async with database.transaction() as session:
                await session.execute(select(func.count()).select_from(outbox))
        except Exception as exc:
            errors.append(exc)
    assert len(errors) == 1, errors
    assert is_transient(errors[0]), repr(errors[0])


@pytest.mark.parametrize(
    ("length", "padded_to"), [(0, 0), (1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (300, 512)]
)
def test_an_in_list_is_padded_to_a_power_of_two_with_its_last_value(
    length: int, padded_to: int
) -> None:
    values = [f"id-{i}" for i in range(length)]
    result = padded(values)
    assert len(result) == padded_to
    assert result[:length] == values
    assert set(result) == set(values)  # what IN matches is unchanged


def test_in_chunks_cut_at_the_limit_and_pad_each_chunk() -> None:
    cut = list(in_chunks(list(range(IN_LIST_MAX * 2 + 3))))
    assert [len(c) for c in cut] == [512, 512, 4]
    assert sorted(set().union(*cut)) == list(range(IN_LIST_MAX * 2 + 3))


def test_chunks_cut_at_the_limit_without_padding() -> None:
    values = list(range(IN_LIST_MAX * 2 + 3))
    cut = list(chunks(values))
    assert [len(c) for c in cut] == [IN_LIST_MAX, IN_LIST_MAX, 3]
    assert [v for c in cut for v in c] == values
    assert list(chunks([])) == []


async def test_lists_of_every_length_make_a_few_statement_texts(database: Database) -> None:
    """Each text is a prepared statement in every connection's cache (SQLite's and asyncpg's):
    forty lengths of the inbox's IN list make seven texts on SQLite, and the same answers; on
    PostgreSQL the ids go as one array (`= ANY(...)`), one text."""
    inbox = InboxBatch(consumer="c")
    async with database.transaction() as session:
        for i in range(0, 40, 3):
            inbox.record(
                message_id=f"m{i}",
                topic="t",
                partition=0,
                offset=i,
                outcome="handled",
                event_type=None,
                case_id=None,
                at=datetime.now(UTC),
            )
        await inbox.flush(session)
    with executed_statements(database.engine) as executed:
        async with database.transaction() as session:
            for length in range(1, 41):
                ids = [f"m{i}" for i in range(length)]
                found = await InboxBatch(consumer="c").seen(session, ids)
                assert sorted(found) == sorted(f"m{i}" for i in range(0, length, 3))
    texts = {s for s in executed if "kit_inbox" in s and s.lstrip().upper().startswith("SELECT")}
    assert len(texts) == (7 if database.is_sqlite else 1)  # SQLite: 1, 2, 4, ... 64 values


async def test_a_bulk_insert_stores_every_kind_of_value(database: Database) -> None:
    """Bytes, JSON (lists, objects, null), timestamps, SQL NULLs and text with accents: what
    BulkInsert writes reads back as executemany's rows do, on both databases; on PostgreSQL
    the batch is one statement whatever its size."""
    at = datetime(2026, 11, 28, 9, 30, 5, 123456, tzinfo=UTC)
    rows = [
        {
            "id": 1_000 + i,
            "topic": f"pimms.cases.v1-é{i}",
            "key": None if i % 3 == 0 else f"k{i}".encode(),
            "value": bytes([0, 255, i % 256]) * 3,
            "headers": [["ce_type", "fr.pimms.case.opened.v1"], ["n", str(i)]],
            "event_type": None,
            "event_id": f"e{i}",
            "case_id": f"case-{i % 7}",
            "detail": None,
            "on_sent": {"hook": "h", "args": [i, None]} if i % 2 else None,
            "created_at": at,
            "sent_at": None,
        }
        for i in range(300)
    ]
    with executed_statements(database.engine) as executed:
        async with database.transaction() as session:
            await BulkInsert(outbox)(session, rows)
    inserts = [s for s in executed if s.lstrip().upper().startswith("INSERT")]
    if not database.is_sqlite:
        assert len(inserts) == 1
        assert "unnest" in inserts[0]
    async with database.reading() as connection:
        stored = (await connection.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    assert [dict(row) for row in stored] == rows


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("skip_existing", {"a": "first", "b": "b1", "z": "z"}),
        ("replace_existing", {"a": "second", "b": "b2", "z": "z"}),
    ],
)
async def test_a_bulk_insert_skips_or_replaces_rows_already_stored(
    database: Database, mode: str, expected: dict[str, str]
) -> None:
    """`skip_existing`: a key stored before, or twice in the batch, keeps its first row.
    `replace_existing`: it ends with the last row's values, as executemany left it."""
    write = BulkInsert(trace_keys, **{mode: ["alias"]})
    async with database.transaction() as session:
        await write(session, [{"alias": "a", "case_id": "first"}, {"alias": "z", "case_id": "z"}])
    async with database.transaction() as session:
        await write(
            session,
            [
                {"alias": "a", "case_id": "second"},
                {"alias": "b", "case_id": "b1"},
                {"alias": "b", "case_id": "b2"},
            ],
        )
    async with database.reading() as connection:
        stored = {r.alias: r.case_id for r in await connection.execute(select(trace_keys))}
    assert stored == expected


async def test_a_bulk_insert_of_nothing_sends_nothing(database: Database) -> None:
    with executed_statements(database.engine) as executed:
        async with database.transaction() as session:
            await BulkInsert(outbox)(session, [])
    assert not [s for s in executed if "kit_outbox" in s]


async def test_a_bulk_update_sets_each_row_to_its_own_values(database: Database) -> None:
    """Each row matched by its key gets its values; a `keep` column stays where the new value
    is NULL; a row not named is untouched; on PostgreSQL the batch is one statement."""
    at = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    async with database.transaction() as session:
        await BulkInsert(outbox)(session, [{"id": i, **_row(f"t{i}")} for i in range(1, 201)])
    mark = BulkUpdate(
        outbox,
        match={"b_id": "id"},
        assign={"b_sent": "sent_at", "b_detail": "detail", "b_headers": "headers"},
        keep=["detail"],
    )
    with executed_statements(database.engine) as executed:
        async with database.transaction() as session:
            await mark(
                session,
                [
                    {
                        "b_id": i,
                        "b_sent": at if i % 2 else None,
                        "b_detail": f"d{i}" if i % 3 else None,
                        "b_headers": [["n", str(i)]],
                    }
                    for i in range(1, 151)
                ],
            )
    updates = [s for s in executed if s.lstrip().upper().startswith("UPDATE")]
    if not database.is_sqlite:
        assert len(updates) == 1
        assert "unnest" in updates[0]
    async with database.transaction() as session:  # `keep`: NULL leaves the value there
        await mark(session, [{"b_id": 4, "b_sent": at, "b_detail": None, "b_headers": []}])
    async with database.reading() as connection:
        stored = {r.id: r for r in await connection.execute(select(outbox))}
    for i in range(1, 151):
        row = stored[i]
        assert row.sent_at == (at if i % 2 or i == 4 else None)
        assert row.detail == (f"d{i}" if i % 3 else None)
        assert row.headers == ([] if i == 4 else [["n", str(i)]])
    assert all(stored[i].sent_at is None and stored[i].headers == [] for i in range(151, 201))


async def test_a_bulk_update_naming_a_row_twice_applies_both_in_order(database: Database) -> None:
    """As executemany does: the later values win, a `keep` column keeps the earlier one."""
    async with database.transaction() as session:
        await BulkInsert(outbox)(session, [{"id": i, **_row("t")} for i in (1, 2)])
    mark = BulkUpdate(
        outbox,
        match={"b_id": "id"},
        assign={"b_topic": "topic", "b_detail": "detail"},
        keep=["detail"],
    )
    async with database.transaction() as session:
        await mark(
            session,
            [
                {"b_id": 1, "b_topic": "first", "b_detail": "kept"},
                {"b_id": 2, "b_topic": "other", "b_detail": None},
                {"b_id": 1, "b_topic": "second", "b_detail": None},
            ],
        )
    async with database.reading() as connection:
        stored = {r.id: (r.topic, r.detail) for r in await connection.execute(select(outbox))}
    assert stored == {1: ("second", "kept"), 2: ("other", None)}
