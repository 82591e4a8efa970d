"""Kit version 3 on SQLite and PostgreSQL: the inbox is keyed (message_id, consumer).

The migration keeps every row and the case index and goes back; and on PostgreSQL without
statistics (a fresh database whose autovacuum has not run, or is off, as on the CI machine) a
batch's duplicate check is an index search by message id, not a scan of every row the consumer
ever recorded (the old key made a backlog drain slower with each batch it committed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from pimms_servicekit.db import Database, in_chunks
from pimms_servicekit.inbox import InboxBatch
from pimms_servicekit.tables import (
    INBOX_KEY,
    create_kit_tables,
    inbox,
    key_kit_inbox_by_consumer,
    key_kit_inbox_by_message,
    kit_metadata,
)
from sqlalchemy import Connection, insert, inspect, select, text

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _step(*steps: Callable[[Any], None]) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        context = MigrationContext.configure(
            connection, opts={"render_as_batch": connection.dialect.name == "sqlite"}
        )
        operations = Operations(context)
        for step in steps:
            step(operations)

    return run


def _row(consumer: str, n: int) -> dict[str, Any]:
    return {
        "consumer": consumer,
        "message_id": f"msg-{n:06d}",
        "topic": "pimms.intake.needs.v1",
        "partition": n % 4,
        "offset": n,
        "event_type": "fr.pimms.need.submitted.v1",
        "case_id": f"case-{n % 50}",
        "outcome": "processed",
        "processed_at": AT,
    }


def _by_key(rows: Any) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: (row["message_id"], row["consumer"]))


def _shape(connection: Connection) -> tuple[list[str], list[str], int]:
    inspector = inspect(connection)
    key = inspector.get_pk_constraint("kit_inbox")["constrained_columns"]
    indexes = [index["name"] for index in inspector.get_indexes("kit_inbox")]
    count = connection.execute(text("SELECT count(*) FROM kit_inbox")).scalar_one()
    return key, indexes, count


async def test_the_migration_rekeys_the_inbox_keeps_its_rows_and_goes_back(
    database_url: str,
) -> None:
    database = Database(database_url)
    rows = [_row(consumer, n) for consumer in ("intake", "intake-retry") for n in range(300)]
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_step(create_kit_tables))
            await connection.execute(insert(inbox), rows)
            assert await connection.run_sync(_shape) == (
                ["consumer", "message_id"],
                ["ix_kit_inbox_case"],
                600,
            )

            await connection.run_sync(_step(key_kit_inbox_by_message))
            assert await connection.run_sync(_shape) == (
                list(INBOX_KEY),
                ["ix_kit_inbox_case"],
                600,
            )
            stored = await connection.execute(select(inbox))
            assert _by_key(dict(r._mapping) for r in stored) == _by_key(rows)

            await connection.run_sync(_step(key_kit_inbox_by_consumer))
            assert await connection.run_sync(_shape) == (
                ["consumer", "message_id"],
                ["ix_kit_inbox_case"],
                600,
            )
    finally:
        await database.dispose()


async def test_the_running_tables_carry_the_new_key(database_url: str) -> None:
    assert [c.name for c in inbox.primary_key.columns] == list(INBOX_KEY)
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(kit_metadata.create_all)
            key, _, _ = await connection.run_sync(_shape)
        assert key == list(INBOX_KEY)
    finally:
        await database.dispose()


def _generic_plan_of_the_lookup(connection: Connection, ids: list[str]) -> list[str]:
    """The plan PostgreSQL caches for the kit's prepared lookup after five executions.

    Its first five executions are planned with the values in hand; from the sixth, a plan made
    for any values may be kept. That generic plan is the one that compared every row with the list
    (0.6 s a lookup at 20,000 rows, against 5-15 ms for the same lookup planned with its values).
    """
    (chunk,) = in_chunks(ids)
    places = ", ".join(f"${n}" for n in range(2, len(chunk) + 2))
    connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    connection.exec_driver_sql(  # placeholders only: the values follow in EXECUTE
        "PREPARE seen AS SELECT message_id, outcome FROM kit_inbox "  # noqa: S608
        f"WHERE consumer = $1::varchar AND message_id IN ({places})"
    )
    values = ", ".join(f"'{value}'" for value in ["intake", *chunk])
    plan = [line for (line,) in connection.exec_driver_sql(f"EXPLAIN EXECUTE seen({values})")]
    connection.exec_driver_sql("DEALLOCATE seen")
    return plan


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("rekey", "searched_by_message"), [(True, True), (False, False)], ids=["v3", "v1"]
)
async def test_a_duplicate_check_without_statistics_searches_the_index_by_message(
    database_url: str, rekey: bool, searched_by_message: bool
) -> None:
    """The v1 case shows the plan this avoids (so the test can tell the two keys apart)."""
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            steps = (create_kit_tables, key_kit_inbox_by_message) if rekey else (create_kit_tables,)
            await connection.run_sync(_step(*steps))
            await connection.execute(insert(inbox), [_row("intake", n) for n in range(20_000)])
            never_analyzed = await connection.execute(
                text("SELECT reltuples FROM pg_class WHERE relname = 'kit_inbox'")
            )
            assert never_analyzed.scalar_one() < 0  # PostgreSQL's "no statistics yet"

            ids = [f"msg-{n:06d}" for n in range(0, 20_000, 40)]
            plan = await connection.run_sync(_generic_plan_of_the_lookup, ids)
        index_conditions = [line for line in plan if "Index Cond" in line]
        assert index_conditions, plan
        assert all(("message_id" in line) is searched_by_message for line in index_conditions)
        if rekey:  # and the kit's own lookup finds what it should
            async with database.sessions() as session:
                seen = await InboxBatch("intake").seen(session, [*ids[:3], "msg-unknown"])
            assert set(seen) == set(ids[:3])
    finally:
        await database.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_lookup_is_planned_with_its_values_each_time_on_postgresql(
    database_url: str,
) -> None:
    """No generic plan is kept for a statement run many times while its table grows.

    PostgreSQL switches a prepared statement to a generic plan after five executions and keeps
    it until the table is analyzed; made for the nearly empty table of a fresh service, that plan
    tested every row against the whole IN list as the table grew (a second a lookup at 40,000
    rows). pg_prepared_statements counts the plans each statement of the connection got.
    """
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(kit_metadata.create_all)
        ids = [f"msg-{n:06d}" for n in range(512)]
        async with database.engine.connect() as connection:
            for round_ in range(12):
                rows = [_row("intake", round_ * 1_000 + n) for n in range(1_000)]
                await connection.execute(insert(inbox), rows)
                await connection.commit()
                async with database.sessions(bind=connection) as session:
                    seen = await InboxBatch("intake").seen(session, ids)
                assert len(seen) == 512
            plans = await connection.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE 'SELECT kit_inbox.message_id%'"
                )
            )
            counts = {(generic, custom) for generic, custom in plans}
        assert counts == {(0, 12)}
    finally:
        await database.dispose()
