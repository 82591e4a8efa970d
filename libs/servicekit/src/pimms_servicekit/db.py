"""Async SQLAlchemy engine and sessions: SQLite (embedded default), PostgreSQL (production)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import ARRAY, Table, any_, bindparam, event, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.elements import ColumnElement

# One advisory-lock key per purpose, so that several instances of a service cooperate on PostgreSQL.
MIGRATION_LOCK = 7_391_001
RELAY_LOCK = 7_391_002

PREPARED_STATEMENTS = 1000  # per PostgreSQL connection
# The most values one `IN (...)` list carries: under SQLite's old limit of 999 variables.
IN_LIST_MAX = 500

T = TypeVar("T")


def padded(values: Iterable[T]) -> list[T]:
    """`values` for an `IN (...)` list, the last one repeated up to the next power of two.

    Each length of an IN list is its own statement text, so its own prepared statement in
    SQLite's statement cache and asyncpg's, per connection. On a backlog every length from 1 to
    500 came up: SQLite's caches held 128 such statements per connection (13 MB each, 40 MB of
    a service's resident memory) and asyncpg re-parsed. Padded, a query has ten texts at most;
    a repeated value changes nothing to what IN matches."""
    listed = list(values)
    missing = (1 << max(len(listed) - 1, 0).bit_length()) - len(listed) if listed else 0
    return [*listed, *([listed[-1]] * missing)] if missing else listed


def chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """`values` cut at `IN_LIST_MAX`, not padded: for a loop that also uses each chunk itself
    (and passes `padded(chunk)` to its `IN`)."""
    for start in range(0, len(values), IN_LIST_MAX):
        yield values[start : start + IN_LIST_MAX]


def in_chunks(values: Sequence[T]) -> Iterator[list[T]]:
    """`values` cut into IN lists of at most `IN_LIST_MAX`, each `padded`."""
    for chunk in chunks(values):
        yield padded(chunk)


def any_of(column: Any, name: str) -> ColumnElement[bool]:
    """`column = ANY(:name)`, the values in one array parameter (PostgreSQL only).

    One statement text for any number of values, and one parameter to bind instead of up to
    512 (`padded`). Its plan is the IN list's: each connection plans with the values
    (`force_custom_plan`, see `Database`), so on a table not yet analyzed both forms scan the
    table with a hashed list until its statistics favour the index. Probe, 200 batches of 500
    ids into an inbox never analyzed: IN 4.4-30 ms a look-up, `= ANY` 2.1-27 ms, both growing
    with the table."""
    return column == any_(bindparam(name, type_=ARRAY(column.type, dimensions=1)))  # type: ignore[no-any-return]


def _dialect(session: AsyncSession | AsyncConnection) -> str:
    bind = session.get_bind() if isinstance(session, AsyncSession) else session
    return bind.dialect.name


class BulkInsert:
    """The INSERT of a batch's rows into one table, in one statement on PostgreSQL.

    executemany sends PostgreSQL one Bind and Execute per row, and the server runs the INSERT
    once per row: 31 µs of its CPU per inbox row, measured. Here the rows go as one array per
    column into `INSERT ... SELECT unnest(:a), unnest(:b), ...`, one execution for the batch
    (18 µs a row), and one statement text whatever the batch's size. SQLite, in process, keeps
    executemany, and so does a single row. Every row has the keys of the first (as with
    executemany).

    `skip_existing`: the columns of a unique key; a row whose key is stored already is skipped
    (ON CONFLICT DO NOTHING). `replace_existing`: such a row's other columns take the new
    values (ON CONFLICT DO UPDATE); of rows naming one key twice, the last one is written, as
    executemany would leave it."""

    def __init__(
        self,
        table: Table,
        *,
        skip_existing: Sequence[str] = (),
        replace_existing: Sequence[str] = (),
    ) -> None:
        if skip_existing and replace_existing:
            raise ValueError("skip_existing or replace_existing, not both")
        self.table = table
        self.skip_existing = list(skip_existing)
        self.replace_existing = list(replace_existing)
        self._statements: dict[tuple[str, tuple[str, ...], bool], Any] = {}

    def _statement(self, dialect: str, names: tuple[str, ...], unnest: bool) -> Any:
        statement: Any = (postgresql if dialect == "postgresql" else sqlite).insert(self.table)
        if unnest:
            arrays = [
                func.unnest(bindparam(f"u_{n}", type_=ARRAY(self.table.c[n].type, dimensions=1)))
                for n in names
            ]
            statement = statement.from_select(list(names), select(*arrays))
        others = [n for n in names if n not in self.replace_existing]
        if self.replace_existing and others:
            return statement.on_conflict_do_update(
                index_elements=self.replace_existing,
                set_={n: statement.excluded[n] for n in others},
            )
        if self.skip_existing or self.replace_existing:
            return statement.on_conflict_do_nothing(
                index_elements=self.skip_existing or self.replace_existing
            )
        return statement

    async def __call__(
        self, session: AsyncSession | AsyncConnection, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if not rows:
            return
        dialect, names = _dialect(session), tuple(rows[0])
        # A single row goes as it is: the arrays cost the service about 0.1 ms more (measured).
        unnest = dialect == "postgresql" and len(rows) > 1
        statement = self._statements.get((dialect, names, unnest))
        if statement is None:
            statement = self._statement(dialect, names, unnest)
            self._statements[dialect, names, unnest] = statement
        if not unnest:
            await session.execute(statement, list(rows))
            return
        if self.replace_existing:  # DO UPDATE may not touch a row twice in one statement
            rows = list({tuple(r[k] for k in self.replace_existing): r for r in rows}.values())
        await session.execute(statement, {f"u_{n}": [row[n] for row in rows] for n in names})


class BulkUpdate:
    """The UPDATE of many rows of one table, each to its own values, in one statement on
    PostgreSQL (executemany runs it once per row, like an INSERT: see BulkInsert).

    `match` maps a row's key to the column that finds the table row, `assign` a row's key to the
    column it sets; `keep`: columns (of `assign`) left as they are where the row's value is
    NULL. PostgreSQL gets `UPDATE t SET ... FROM (SELECT unnest(:a) AS a, ...) AS v WHERE
    t.c = v.a`; SQLite, a single row, and a batch naming one table row twice (executemany
    applies those in order, a join would apply one of them) get the executemany form."""

    def __init__(
        self,
        table: Table,
        *,
        match: Mapping[str, str],
        assign: Mapping[str, str],
        keep: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.match = dict(match)
        params = {**self.match, **assign}
        each = update(table).where(
            *(table.c[column] == bindparam(key) for key, column in self.match.items())
        )
        self._each = each.values(
            {column: self._merged(column, bindparam(key), keep) for key, column in assign.items()}
        )
        rows = select(
            *(
                func.unnest(
                    bindparam(f"u_{key}", type_=ARRAY(table.c[column].type, dimensions=1))
                ).label(key)
                for key, column in params.items()
            )
        ).subquery("v")
        self._unnest = (
            update(table)
            .where(*(table.c[column] == rows.c[key] for key, column in self.match.items()))
            .values(
                {column: self._merged(column, rows.c[key], keep) for key, column in assign.items()}
            )
        )
        self._keys = list(params)

    def _merged(self, column: str, value: Any, keep: Sequence[str]) -> Any:
        return func.coalesce(value, self.table.c[column]) if column in keep else value

    async def __call__(
        self, session: AsyncSession | AsyncConnection, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if not rows:
            return
        if (
            len(rows) == 1
            or _dialect(session) != "postgresql"
            or len({tuple(row[key] for key in self.match) for row in rows}) < len(rows)
        ):
            await session.execute(self._each, list(rows))
            return
        await session.execute(
            self._unnest, {f"u_{k}": [row[k] for row in rows] for k in self._keys}
        )


_READ_ONLY = "pimms_read_only"  # execution option of `Database.reading()` connections


class Database:
    """One service's database: engine, sessions, migrations."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        options: dict[str, Any] = {"hide_parameters": True}  # no personal data in error texts
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30}
        else:
            # No ping before each checkout (it was one more round trip per transaction). A
            # connection found dead on use raises a transient error (`connection_invalidated`):
            # the batch is retried, and SQLAlchemy has already dropped every older connection
            # of the pool, so the retry starts on a fresh one.
            options.update(pool_size=pool_size, max_overflow=pool_size)
            # Each length of an `IN (...)` list is its own statement text, so its own prepared
            # statement: 100 (the default) was too few for a service's statements times the
            # batch sizes seen, and a miss costs a Parse round trip and a plan on the server.
            # Every execution planned with its values: after five executions PostgreSQL may keep
            # a generic plan for a prepared statement, made once for the table as it was then and
            # not made again until the table is analyzed. A service's tables start empty and grow
            # by thousands of rows a second behind a backlog, so the plan kept for a batch's
            # `IN (...)` lookup was a sequential scan testing each row against 512 parameters
            # one by one: a second a lookup at 40,000 rows, where its plan made with the values
            # (a hashed list, or the index once the table is big enough) took 10-30 ms.
            options["connect_args"] = {
                "prepared_statement_cache_size": PREPARED_STATEMENTS,
                "server_settings": {"plan_cache_mode": "force_custom_plan"},
            }
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            _sqlite_transactions(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads that need no transaction of their own: no BEGIN and ROLLBACK
        round trips on PostgreSQL, and no write lock on SQLite (a plain deferred BEGIN)."""
        options = {_READ_ONLY: True} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"}
        async with self.engine.connect() as connection:
            yield await connection.execution_options(**options)

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one statement that is atomic by itself: autocommit on PostgreSQL
        (no BEGIN and COMMIT round trips, as `reading`), an ordinary write transaction on
        SQLite."""
        connect = self.engine.begin if self.is_sqlite else self.reading
        async with connect() as connection:
            yield connection

    async def migrate(self, migrations_dir: Path) -> None:
        """Bring the schema to the latest revision (one instance at a time on PostgreSQL)."""
        async with self.engine.connect() as connection:
            if not self.is_sqlite:
                await connection.execute(
                    text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK}
                )
                await connection.commit()
            try:
                await connection.run_sync(_upgrade, migrations_dir)
                await connection.commit()
            finally:
                if not self.is_sqlite:
                    await connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK}
                    )
                    await connection.commit()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every connection."""
        await self.engine.dispose()


def _upgrade(connection: Connection, migrations_dir: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """Real transactions on SQLite: WAL, a busy timeout, and BEGIN IMMEDIATE.

    pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; writers that start
    deferred and upgrade later fail at once with "database is locked" instead of waiting. Taking
    the write lock at BEGIN lets the busy timeout queue writers (consumer, relay) fairly.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


async def wait_for_database(database: Database, *, attempts: int = 30, delay: float = 1.0) -> None:
    """Wait until the database answers (it may start after us); raise after `attempts`."""
    for attempt in range(attempts):
        try:
            await database.ping()
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
