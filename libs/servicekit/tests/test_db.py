"""The database's connection kinds: write transactions, reads without one, single statements,
and what happens when the server drops a pooled connection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pimms_servicekit.db import Database
from pimms_servicekit.errors import is_transient
from pimms_servicekit.tables import outbox
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
