"""Transactional outbox: events are rows written with the state change, then a relay publishes them.

The relay publishes pending rows in id order (so in order per key) with acks=all, marks them sent,
and runs the `on_sent` hook a row asked for in the same transaction as the marking (a gateway
records "transmitted" only once Kafka has the partner's message). On PostgreSQL one instance of a
service relays at a time (advisory lock); the others stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pimms_contracts.base import Event
from pimms_contracts.envelope import Envelope, Headers
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from pimms_servicekit.clock import Clock
from pimms_servicekit.db import IN_LIST_MAX, RELAY_LOCK, BulkInsert, Database, in_chunks, padded
from pimms_servicekit.hooks import HookCall, Hooks, Outcome
from pimms_servicekit.logging import get_logger
from pimms_servicekit.messages import encode, headers_from_json, headers_to_json, new_id
from pimms_servicekit.tables import outbox

if TYPE_CHECKING:
    from pimms_servicekit.effects import UowFactory
    from pimms_servicekit.unit_of_work import UnitOfWork

log = get_logger("pimms.outbox")

# An idle relay or dispatcher polls less and less, up to this: local commits wake it at once, so
# the poll only finds what another instance committed, or retries that came due.
IDLE_POLL_MAX_S = 1.0

# Committed rows the relay keeps in memory until it publishes them (about 2 KB each); beyond, it
# reads them back from the database as before.
COMMITTED_CACHE_MAX = 2000


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    id: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


class OutboxBuffer:
    """Rows to add to the outbox in the current transaction."""

    def __init__(self, *, source: str, clock: Clock) -> None:
        self.source = source
        self.clock = clock
        self.rows: list[dict[str, Any]] = []
        # The rows inserted, as the relay will publish them: handed to it after the commit, so
        # that it does not read back what was just written (see `OutboxRelay.offer`).
        self.flushed: list[Pending] = []
        self._headers: list[Headers] = []

    @property
    def written(self) -> int:
        """Rows inserted by this unit of work (the relay is woken only then)."""
        return len(self.flushed)

    def event(
        self,
        event: Event,
        *,
        topic: str,
        key: str | bytes | None,
        case_id: str | None,
        correlation_id: str | None,
        causation_id: str | None,
        detail: str | None = None,
        on_sent: dict[str, Any] | None = None,
        event_id: str | None = None,
        extra_headers: Sequence[tuple[str, bytes]] = (),
    ) -> Envelope:
        """Queue a platform event with its CloudEvents envelope; return the envelope."""
        envelope = Envelope(
            id=event_id or new_id(),
            source=self.source,
            type=event.ce_type,
            time=self.clock.now(),
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        value, headers = encode(event, envelope=envelope)
        headers = [*headers, *extra_headers]
        self.raw(
            topic=topic,
            key=key,
            value=value,
            headers=headers,
            case_id=case_id,
            event_type=event.ce_type,
            event_id=envelope.id,
            detail=detail,
            on_sent=on_sent,
        )
        return envelope

    def raw(
        self,
        *,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: Headers | Sequence[tuple[str, bytes]] = (),
        case_id: str | None,
        event_type: str | None,
        event_id: str | None = None,
        detail: str | None = None,
        on_sent: dict[str, Any] | None = None,
    ) -> None:
        """Queue a message as bytes (partner formats, dead letters)."""
        headers = list(headers)
        self._headers.append(headers)
        self.rows.append(
            {
                "topic": topic,
                "key": key.encode() if isinstance(key, str) else key,
                "value": value,
                "headers": headers_to_json(headers),
                "event_type": event_type,
                "event_id": event_id,
                "case_id": case_id,
                "detail": detail[:500] if detail else None,
                "on_sent": on_sent,
                "created_at": self.clock.now(),
                "sent_at": None,
            }
        )

    async def flush(self, session: AsyncSession) -> int:
        """Insert the queued rows in one statement; return how many."""
        count = len(self.rows)
        if not count:
            return 0
        rows, headers = self.rows, self._headers
        self.rows, self._headers = [], []
        ids = await _insert_returning_ids(session, rows)
        self.flushed.extend(
            Pending(
                message=Outgoing(
                    id=row_id,
                    topic=row["topic"],
                    key=row["key"],
                    value=row["value"],
                    headers=row_headers,
                ),
                on_sent=row["on_sent"],
            )
            for row_id, row, row_headers in zip(ids, rows, headers, strict=True)
        )
        return count


_INSERT = BulkInsert(outbox)
_LARGEST_ID = select(func.max(outbox.c.id))
_NEXT_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('kit_outbox', 'id')) FROM generate_series(1, :count)"
)
_PENDING_IDS = (
    select(outbox.c.id)
    .where(outbox.c.sent_at.is_(None))
    .order_by(outbox.c.id)
    .limit(bindparam("limit"))
)
_ROWS = select(
    outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers, outbox.c.on_sent
).where(outbox.c.id.in_(bindparam("ids", expanding=True)))
_MARK_SENT = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(sent_at=bindparam("now"))
)


async def _insert_returning_ids(session: AsyncSession, rows: list[dict[str, Any]]) -> Sequence[int]:
    """Insert outbox rows; their ids, in order.

    SQLite gives a new row the largest id plus one, and a transaction here holds the write lock
    from its BEGIN IMMEDIATE, so the ids of a batch follow the largest one read just before.
    PostgreSQL takes the batch's ids from the table's sequence first, then inserts the rows
    with them: two statements, each the same text whatever the batch's size. (INSERT ...
    RETURNING in parameter order is rendered as one statement of n rows, a new text for every n
    up to 1,000: each a prepared statement of up to 11,000 parameters kept per connection by the
    service and by its PostgreSQL backend, which grew to 300 and 500 MB on a 100,000-need drain.)
    """
    bind = session.bind
    if bind is not None and bind.dialect.name == "sqlite":
        largest = (await session.execute(_LARGEST_ID)).scalar() or 0
        await _INSERT(session, rows)
        return range(largest + 1, largest + 1 + len(rows))
    ids = sorted((await session.execute(_NEXT_IDS, {"count": len(rows)})).scalars())
    for row, row_id in zip(rows, ids, strict=True):
        row["id"] = row_id
    await _INSERT(session, rows)
    return ids


@dataclass(frozen=True, slots=True)
class Pending:
    """A committed outbox row as the relay publishes it, and the hook it asked for."""

    message: Outgoing
    on_sent: dict[str, Any] | None


class Sender(Protocol):
    """Publishes messages; returns how many of the first ones are surely delivered."""

    async def send(self, messages: Sequence[Outgoing]) -> tuple[int, BaseException | None]:
        """Publish in order; (delivered prefix length, first error)."""
        ...


@dataclass
class RelayStats:
    """What the relay did, for health and benchmarks."""

    published: int = 0
    batches: int = 0
    failures: int = 0
    leader: bool = False
    failing: bool = False
    last_error: str | None = None
    _started: float = field(default=0.0, repr=False)


class OutboxRelay:
    """Publishes outbox rows and marks them sent."""

    def __init__(
        self,
        *,
        database: Database,
        sender: Sender,
        clock: Clock,
        source: str,
        batch_size: int = 1000,
        poll_interval: float = 0.2,
        hooks: Hooks[Any] | None = None,
        make_uow: UowFactory | None = None,
    ) -> None:
        self.database = database
        self.sender = sender
        self.clock = clock
        self.source = source
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.hooks: Hooks[Any] = hooks or Hooks()
        self.make_uow = make_uow
        self.on_published: Callable[[Sequence[Outgoing]], None] | None = None
        # After a commit of hooks' work: wake the dispatchers that have new effects.
        self.on_committed: Callable[[UnitOfWork[Any]], None] | None = None
        self.stats = RelayStats()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_connection: AsyncConnection | None = None
        self._publish_lock = asyncio.Lock()
        # Rows this process committed, by id, so that a round reads only which rows are pending
        # (their ids, from the index) and not their content again. The database stays the truth:
        # a row missing here (another instance's, or one beyond the cap) is read from it.
        self._committed: dict[int, Pending] = {}

    def notify(self) -> None:
        """New rows were committed: publish soon rather than at the next poll."""
        self._wake.set()

    def offer(self, rows: Sequence[Pending]) -> None:
        """Rows just committed by this process: keep them for the round that publishes them."""
        room = COMMITTED_CACHE_MAX - len(self._committed)
        for row in rows[: max(room, 0)]:
            self._committed[row.message.id] = row
        if rows:
            self._wake.set()

    def start(self) -> None:
        """Run in the background."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, *, drain_timeout: float = 10.0) -> None:
        """Publish what is pending (within `drain_timeout`), then stop."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=drain_timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None
        await self._release_leadership()

    async def drain(self) -> int:
        """Publish every pending row now (tests, shutdown); return how many were published."""
        total = 0
        while True:
            count = await self.publish_pending()  # on_sent hooks may queue follow-ups: go on
            total += count
            if count == 0:
                return total

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; return how many were marked sent."""
        async with self._publish_lock:
            rows = await self._pending_rows()
            if not rows:
                return 0
            messages = [row.message for row in rows]
            delivered, error = await self.sender.send(messages)
            self.stats.failing = error is not None
            if delivered and self.on_published is not None:
                self.on_published(messages[:delivered])
            if delivered:
                await self._mark_sent(rows[:delivered])
                for row in rows[:delivered]:
                    self._committed.pop(row.message.id, None)
                self.stats.published += delivered
                self.stats.batches += 1
            if error is not None:
                self.stats.failures += 1
                self.stats.last_error = type(error).__name__
                raise RelayError(f"publishing failed after {delivered} message(s)") from error
            return delivered

    async def _pending_rows(self) -> list[Pending]:
        """The next pending rows in id order (so in order per key): their ids from the index,
        their content from what this process committed, else from the database."""
        async with self.database.reading() as connection:
            ids = list(
                (await connection.execute(_PENDING_IDS, {"limit": self.batch_size})).scalars()
            )
            if not ids:
                return []
            committed = self._committed
            while committed:  # rows sent meanwhile by another instance: forget them
                oldest = next(iter(committed))
                if oldest >= ids[0]:
                    break
                del committed[oldest]
            missing = [i for i in ids if i not in committed]
            found: dict[int, Pending] = {}
            for chunk in in_chunks(missing):
                result = await connection.execute(_ROWS, {"ids": chunk})
                for r in result:
                    found[r.id] = Pending(
                        message=Outgoing(
                            id=r.id,
                            topic=r.topic,
                            key=r.key,
                            value=r.value,
                            headers=headers_from_json(r.headers),
                        ),
                        on_sent=r.on_sent,
                    )
        rows = []
        for row_id in ids:
            row = committed.get(row_id) or found.get(row_id)
            if row is None:
                break  # sent by another instance since the ids were read: the next round sees
            rows.append(row)
        return rows

    async def _mark_sent(self, rows: Sequence[Pending]) -> None:
        now = self.clock.now()
        ids = [r.message.id for r in rows]
        if len(ids) <= IN_LIST_MAX and not any(r.on_sent for r in rows):
            # The common round: one UPDATE, atomic by itself (no BEGIN/COMMIT round trips).
            async with self.database.single_statement() as connection:
                await connection.execute(_MARK_SENT, {"ids": padded(ids), "now": now})
            return
        async with self.database.transaction() as session:
            for chunk in in_chunks(ids):
                await session.execute(_MARK_SENT, {"ids": chunk, "now": now})
            sent = Outcome(delivered=True, at=now)
            hooked = [(HookCall.from_json(r.on_sent), sent) for r in rows if r.on_sent]
            if not hooked:
                return
            if self.make_uow is None:
                raise RuntimeError("outbox rows name hooks but the relay has no unit of work")
            uow = self.make_uow(session)
            await self.hooks.run_round(hooked, uow)
            follow_ups = len(uow.outbox.rows)
            await uow.flush()
        uow.committed()
        if self.on_committed is not None:
            self.on_committed(uow)
        if follow_ups:
            self._wake.set()

    async def _run(self) -> None:
        delay = self.poll_interval
        idle = self.poll_interval  # grows while rounds find nothing: a local commit wakes us anyway
        outage_since: float | None = None  # an outage is logged when it starts and when it ends
        while True:
            try:
                if not await self._lead():
                    if self._stopping.is_set():
                        return
                    await self._sleep(max(self.poll_interval * 5, 1.0))
                    continue
                count = await self.publish_pending()
                delay = self.poll_interval
                if outage_since is not None:
                    log.info(
                        "outbox.relay_recovered",
                        stalled_s=round(time.monotonic() - outage_since, 1),
                        failures=self.stats.failures,
                    )
                    outage_since = None
                if count >= self.batch_size:
                    continue
                if self._stopping.is_set():
                    return
                idle = min(idle * 2, IDLE_POLL_MAX_S) if count == 0 else self.poll_interval
                if await self._sleep(idle):
                    idle = self.poll_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning(
                        "outbox.relay_failed",
                        error=type(exc).__name__,
                        detail=str(exc),
                        retry_in_s=round(delay, 2),
                    )
                await self._release_leadership()
                if self._stopping.is_set():
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` or until woken; True if woken."""
        woken = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
            woken = True
        self._wake.clear()
        return woken

    async def _lead(self) -> bool:
        """On PostgreSQL, hold the relay advisory lock; SQLite has one process per file."""
        if self.database.is_sqlite:
            self.stats.leader = True
            return True
        if self._lock_connection is not None:
            return True
        connection = await self.database.engine.connect()
        try:
            got = (
                await connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RELAY_LOCK})
            ).scalar()
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if got:
            self._lock_connection = connection
            self.stats.leader = True
            log.info("outbox.relay_leader")
            return True
        await connection.close()
        self.stats.leader = False
        return False

    async def _release_leadership(self) -> None:
        connection, self._lock_connection = self._lock_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RELAY_LOCK})
                await connection.commit()
            with contextlib.suppress(Exception):
                await connection.close()
        self.stats.leader = False


class RelayError(RuntimeError):
    """The relay could not publish everything; it will retry."""
