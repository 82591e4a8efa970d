"""The batch-native consume -> transaction -> outbox path.

The records one poll returns (up to a bound, without waiting for a batch to fill) share one
database transaction: their inbox rows, their effects and their outbox rows commit together, and
only then are the offsets committed. A message that fails in a way retrying cannot fix sends the
batch back through one transaction per message, so that this one message is dead-lettered and the
others still commit. Database outages are retried with backoff; the batch is never half-applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import structlog
from pimms_contracts.base import Event
from pimms_contracts.envelope import H_TYPE, Envelope
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit.clock import Clock
from pimms_servicekit.db import Database
from pimms_servicekit.errors import ShuttingDown, is_transient
from pimms_servicekit.logging import get_logger, scrub_text
from pimms_servicekit.messages import (
    BadMessage,
    Incoming,
    decode,
    headers_from_json,
    headers_to_json,
    new_id,
)
from pimms_servicekit.outbox import OutboxBuffer
from pimms_servicekit.tables import inbox, parked, trace_keys

log = get_logger("pimms.pipeline")

T = TypeVar("T")
E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    """A message a route understood: its payload, envelope and the case it is about."""

    payload: T
    envelope: Envelope | None = None
    case_id: str | None = None
    event_type: str | None = None


class Route(Protocol):
    """How one topic is read (`decode`, pure) and acted upon (`handle`)."""

    def decode(self, incoming: Incoming) -> Decoded[Any] | None:
        """The message's meaning; None when this service has nothing to do with it."""
        ...

    async def handle(self, message: Decoded[Any], ctx: MessageContext) -> None:
        """Apply the message inside the batch's transaction."""
        ...


class Prefetching(Protocol):
    """A route that loads, in one query, what all the messages of a batch will need."""

    async def prefetch(self, messages: Sequence[Decoded[Any]], scope: BatchScope) -> None:
        """Called once per batch, before the first message of this route is handled."""
        ...


EventHandler = Callable[[Any, "MessageContext"], Awaitable[None]]


class EventRoute:
    """A topic of platform events: one handler per event type; other types are not ours."""

    def __init__(self, handlers: Mapping[type[Event], EventHandler]) -> None:
        self._handlers = {model.ce_type: (model, handler) for model, handler in handlers.items()}
        self._registry: dict[str, type[Event]] = {t: m for t, (m, _) in self._handlers.items()}

    def decode(self, incoming: Incoming) -> Decoded[Any] | None:
        """Decode the event types this service handles; ignore the others."""
        event_type = incoming.header(H_TYPE)
        if event_type is not None and event_type not in self._handlers:
            return None
        envelope, event = decode(incoming, self._registry)
        case_id = getattr(event, "case_id", None)
        return Decoded(
            payload=event,
            envelope=envelope,
            case_id=str(case_id) if case_id is not None else None,
            event_type=envelope.type,
        )

    async def handle(self, message: Decoded[Any], ctx: MessageContext) -> None:
        """Call the handler of this event type."""
        _, handler = self._handlers[message.event_type or ""]
        await handler(message.payload, ctx)


class BatchScope:
    """What the messages of one batch share: the session, per-batch objects, flushes at the end.

    A handler that writes many similar rows keeps them in a per-batch object (`get`) and writes
    them once, in bulk, when the batch is flushed (`on_flush`), instead of one statement a message.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._items: dict[str, Any] = {}
        self._flushers: list[Callable[[], Awaitable[None]]] = []

    def get(self, key: str, factory: Callable[[], T]) -> T:
        """The batch's single instance of something, made on first use."""
        if key not in self._items:
            self._items[key] = factory()
        return self._items[key]  # type: ignore[no-any-return]

    def on_flush(self, flusher: Callable[[], Awaitable[None]]) -> None:
        """Run `flusher` once, after the last message of the batch, before the commit."""
        self._flushers.append(flusher)

    async def flush(self) -> None:
        """Run the flushers, in registration order."""
        for flusher in self._flushers:
            await flusher()


@dataclass
class _Deferred:
    level: str
    event: str
    fields: dict[str, Any]


@dataclass
class _BatchState:
    session: AsyncSession
    outbox: OutboxBuffer
    scope: BatchScope
    inbox_rows: list[dict[str, Any]] = field(default_factory=list)
    inbox_updates: list[dict[str, Any]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    logs: list[_Deferred] = field(default_factory=list)
    handled: int = 0


class MessageContext:
    """What a handler may do while its message is processed: all of it commits together."""

    def __init__(
        self,
        *,
        pipeline: BatchPipeline,
        state: _BatchState,
        incoming: Incoming,
        decoded: Decoded[Any],
    ) -> None:
        self._pipeline = pipeline
        self._state = state
        self.incoming = incoming
        self.envelope = decoded.envelope
        self.case_id = decoded.case_id
        self.event_type = decoded.event_type
        self.correlation_id = (
            (decoded.envelope.correlation_id if decoded.envelope else None)
            or incoming.correlation_id
            or new_id()
        )
        self.outcome = "handled"
        self.logged = False

    @property
    def session(self) -> AsyncSession:
        """The batch's database session (inside its transaction)."""
        return self._state.session

    @property
    def scope(self) -> BatchScope:
        """What the messages of this batch share (bulk writes, caches)."""
        return self._state.scope

    @property
    def clock(self) -> Clock:
        """The service's clock."""
        return self._pipeline.clock

    def now(self) -> datetime:
        """The current time."""
        return self._pipeline.clock.now()

    def set_case(self, case_id: str, *, correlation_id: str | None = None) -> None:
        """The message turned out to be about this case (bound to the log lines that follow)."""
        self.case_id = case_id
        if correlation_id:
            self.correlation_id = correlation_id
        structlog.contextvars.bind_contextvars(case_id=case_id, correlation_id=self.correlation_id)

    def emit(
        self,
        event: Event,
        *,
        topic: str,
        key: str,
        case_id: str | None = None,
        detail: str | None = None,
        on_sent: dict[str, Any] | None = None,
    ) -> Envelope:
        """Publish a platform event once the transaction commits (caused by this message)."""
        return self._state.outbox.event(
            event,
            topic=topic,
            key=key,
            case_id=case_id or self.case_id,
            correlation_id=self.correlation_id,
            causation_id=self.incoming.message_id,
            detail=detail,
            on_sent=on_sent,
        )

    def send_raw(
        self,
        *,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        event_type: str,
        case_id: str | None = None,
        detail: str | None = None,
        on_sent: dict[str, Any] | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Publish bytes in someone else's format (a partner's) once the transaction commits."""
        self._state.outbox.raw(
            topic=topic,
            key=key,
            value=value,
            headers=headers,
            case_id=case_id or self.case_id,
            event_type=event_type,
            detail=detail,
            on_sent=on_sent,
        )

    def dead_letter(self, *, reason: str, error: str, original: Incoming | None = None) -> None:
        """Send a message (this one by default) to `<its topic>.dlt` with the reason."""
        target = original or self.incoming
        self._pipeline.queue_dead_letter(
            self._state, target, reason=reason, error=error, case_id=self.case_id
        )
        if original is None:
            self.outcome = "dead_lettered"

    async def park(self, *, key: str, reason: str) -> None:
        """Keep this message until `unpark(key)`: it needs something that has not arrived yet."""
        await self.session.execute(
            insert(parked).values(
                park_key=key,
                topic=self.incoming.topic,
                partition=self.incoming.partition,
                offset=self.incoming.offset,
                timestamp_ms=self.incoming.timestamp_ms,
                key=self.incoming.key,
                value=self.incoming.value,
                headers=headers_to_json(self.incoming.headers),
                reason=reason,
                parked_at=self.now(),
            )
        )
        self.outcome = "parked"
        self.log("message.parked", reason=reason)

    async def unpark(self, *, key: str) -> list[Incoming]:
        """The messages parked under `key`, in arrival order, removed from the parking."""
        rows = (
            await self.session.execute(
                select(parked).where(parked.c.park_key == key).order_by(parked.c.id)
            )
        ).all()
        if rows:
            await self.session.execute(delete(parked).where(parked.c.park_key == key))
        return [
            Incoming(
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                key=r.key,
                value=r.value,
                headers=tuple(headers_from_json(r.headers)),
                timestamp_ms=r.timestamp_ms,
            )
            for r in rows
        ]

    async def replay(self, messages: Sequence[Incoming]) -> None:
        """Process unparked messages now, in this transaction."""
        for message in messages:
            await self._pipeline.dispatch(message, self._state, replay=True)

    def alias(self, alias: str) -> None:
        """Let `pimms trace <alias>` find this message's case (a submission id, a reference)."""
        if self.case_id:
            self._state.aliases[alias] = self.case_id

    def log(self, event: str, *, level: str = "info", **fields: Any) -> None:
        """Log once the transaction has committed, so the logs only tell what really happened."""
        bound = dict(structlog.contextvars.get_contextvars())
        bound.update(case_id=self.case_id, correlation_id=self.correlation_id)
        self._state.logs.append(_Deferred(level=level, event=event, fields={**bound, **fields}))
        self.logged = True


@dataclass
class PipelineStats:
    """Counters for health checks and benchmarks."""

    batches: int = 0
    messages: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    isolated_batches: int = 0
    transient_failures: int = 0
    last_batch_at: float = 0.0


class _PoisonInBatch(Exception):
    pass


class BatchPipeline:
    """Routes consumed records to handlers, batch by batch, with inbox, outbox and dead letters."""

    def __init__(
        self,
        *,
        service: str,
        database: Database,
        clock: Clock,
        consumer: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self.source = f"urn:pimms:{service}"
        self.consumer = consumer or service
        self.database = database
        self.clock = clock
        self.routes: dict[str, Route] = {}
        self.on_commit = on_commit
        self.stopping = asyncio.Event()
        self.stats = PipelineStats()

    def route(self, topic: str, route: Route) -> None:
        """Consume `topic` with `route`."""
        self.routes[topic] = route

    @property
    def topics(self) -> list[str]:
        """The topics this pipeline consumes."""
        return list(self.routes)

    async def process(self, records: Sequence[Any]) -> None:
        """Process what one poll returned (aiokafka ConsumerRecords)."""
        incomings = [Incoming.from_record(r) for r in records]
        if not incomings:
            return
        try:
            await self._retrying(lambda: self._run_batch(incomings))
        except _PoisonInBatch:
            self.stats.isolated_batches += 1
            log.warning("pipeline.isolating_batch", size=len(incomings), topic=incomings[0].topic)
            for incoming in incomings:
                await self._retrying(functools.partial(self._run_isolated, incoming))
        self.stats.batches += 1
        self.stats.last_batch_at = time.monotonic()

    async def process_incoming(self, incomings: Sequence[Incoming]) -> None:
        """Process already-built messages (tests and tools)."""
        await self._retrying(lambda: self._run_batch(list(incomings)))

    async def _run_batch(self, incomings: list[Incoming]) -> None:
        try:
            async with self.database.transaction() as session:
                state = self._new_state(session)
                known = await self._known(session, [i.message_id for i in incomings])
                seen: set[str] = set()
                fresh: list[Incoming] = []
                for incoming in incomings:
                    message_id = incoming.message_id
                    if message_id in known or message_id in seen:
                        self.stats.duplicates += 1
                        continue
                    seen.add(message_id)
                    fresh.append(incoming)
                decoded = [self._decode(incoming) for incoming in fresh]
                await self._prefetch(fresh, decoded, state)
                for incoming, meaning in zip(fresh, decoded, strict=True):
                    await self._apply(incoming, meaning, state, replay=False)
                await self._flush(state)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error(
                "pipeline.batch_failed", error=type(exc).__name__, detail=scrub_text(str(exc))
            )
            raise _PoisonInBatch from exc
        self._committed(state)

    async def _run_isolated(self, incoming: Incoming) -> None:
        for attempt in range(3):
            try:
                async with self.database.transaction() as session:
                    state = self._new_state(session)
                    if await self._known(session, [incoming.message_id]):
                        return
                    await self.dispatch(incoming, state)
                    await self._flush(state)
                self._committed(state)
                return
            except Exception as exc:
                if is_transient(exc):
                    raise
                if isinstance(exc, IntegrityError) and attempt < 2:
                    continue  # a concurrent consumer may have recorded it: look again
                await self._dead_letter_alone(incoming, exc)
                return

    async def _dead_letter_alone(self, incoming: Incoming, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {scrub_text(str(exc))}"[:900]
        async with self.database.transaction() as session:
            state = self._new_state(session)
            self.queue_dead_letter(state, incoming, reason="processing_error", error=error)
            self._record_inbox(
                state, incoming, outcome="dead_lettered", event_type=None, case_id=None
            )
            await self._flush(state)
        self._committed(state)

    async def dispatch(
        self, incoming: Incoming, state: _BatchState, *, replay: bool = False
    ) -> None:
        """Decode and handle one message inside `state`'s transaction."""
        meaning = self._decode(incoming)
        await self._prefetch([incoming], [meaning], state)
        await self._apply(incoming, meaning, state, replay=replay)

    def _decode(self, incoming: Incoming) -> Decoded[Any] | BadMessage | None:
        route = self.routes.get(incoming.topic)
        if route is None:
            return BadMessage("unknown_topic", f"{self.service} does not read {incoming.topic}")
        try:
            return route.decode(incoming)
        except BadMessage as bad:
            return bad

    async def _prefetch(
        self,
        incomings: Sequence[Incoming],
        meanings: Sequence[Decoded[Any] | BadMessage | None],
        state: _BatchState,
    ) -> None:
        by_topic: dict[str, list[Decoded[Any]]] = {}
        for incoming, meaning in zip(incomings, meanings, strict=True):
            if isinstance(meaning, Decoded):
                by_topic.setdefault(incoming.topic, []).append(meaning)
        for topic, messages in by_topic.items():
            prefetch = getattr(self.routes[topic], "prefetch", None)
            if prefetch is not None:
                await prefetch(messages, state.scope)

    async def _apply(
        self,
        incoming: Incoming,
        meaning: Decoded[Any] | BadMessage | None,
        state: _BatchState,
        *,
        replay: bool,
    ) -> None:
        started = self.clock.now()  # the trace shows the message before what it caused
        with structlog.contextvars.bound_contextvars(
            event_id=incoming.message_id,
            event_type=incoming.event_type,
            correlation_id=incoming.correlation_id,
            case_id=None,
            kafka=incoming.position,
        ):
            if meaning is None:
                return
            if isinstance(meaning, BadMessage):
                self.queue_dead_letter(state, incoming, reason=meaning.reason, error=meaning.error)
                self._record_inbox(
                    state,
                    incoming,
                    outcome="dead_lettered",
                    event_type=incoming.event_type,
                    case_id=None,
                    replay=replay,
                    at=started,
                )
                return
            ctx = MessageContext(pipeline=self, state=state, incoming=incoming, decoded=meaning)
            structlog.contextvars.bind_contextvars(
                case_id=ctx.case_id, correlation_id=ctx.correlation_id, event_type=ctx.event_type
            )
            await self.routes[incoming.topic].handle(meaning, ctx)
            self._record_inbox(
                state,
                incoming,
                outcome=ctx.outcome,
                event_type=ctx.event_type,
                case_id=ctx.case_id,
                replay=replay,
                at=started,
            )
            state.handled += 1
            if ctx.outcome == "handled" and not ctx.logged:
                ctx.log("message.handled", topic=incoming.topic)

    def queue_dead_letter(
        self,
        state: _BatchState,
        incoming: Incoming,
        *,
        reason: str,
        error: str,
        case_id: str | None = None,
    ) -> None:
        """Queue `incoming` for `<its topic>.dlt` with the pimms_dlt_* headers."""
        failed_at = self.clock.now()
        headers = [
            *incoming.headers,
            ("pimms_dlt_reason", reason.encode()),
            ("pimms_dlt_error", error.encode()),
            ("pimms_dlt_service", self.service.encode()),
            ("pimms_dlt_original_topic", incoming.topic.encode()),
            ("pimms_dlt_original_partition", str(incoming.partition).encode()),
            ("pimms_dlt_original_offset", str(incoming.offset).encode()),
            ("pimms_dlt_failed_at", failed_at.isoformat(timespec="milliseconds").encode()),
        ]
        state.outbox.raw(
            topic=f"{incoming.topic}.dlt",
            key=incoming.key,
            value=incoming.value,
            headers=headers,
            case_id=case_id,
            event_type="dead_letter",
            detail=f"{reason}: {error}",
        )
        self.stats.dead_lettered += 1
        bound = dict(structlog.contextvars.get_contextvars())
        state.logs.append(
            _Deferred(
                level="warning",
                event="message.dead_lettered",
                fields={
                    **bound,
                    "reason": reason,
                    "error": error,
                    "dlt_topic": f"{incoming.topic}.dlt",
                    "case_id": case_id or bound.get("case_id"),
                },
            )
        )

    def _new_state(self, session: AsyncSession) -> _BatchState:
        return _BatchState(
            session=session,
            outbox=OutboxBuffer(source=self.source, clock=self.clock),
            scope=BatchScope(session),
        )

    def _record_inbox(
        self,
        state: _BatchState,
        incoming: Incoming,
        *,
        outcome: str,
        event_type: str | None,
        case_id: str | None,
        replay: bool = False,
        at: datetime | None = None,
    ) -> None:
        row = {
            "consumer": self.consumer,
            "message_id": incoming.message_id[:300],
            "topic": incoming.topic,
            "partition": incoming.partition,
            "offset": incoming.offset,
            "event_type": (event_type or "")[:200] or None,
            "case_id": case_id,
            "outcome": outcome,
            "processed_at": at or self.clock.now(),
        }
        (state.inbox_updates if replay else state.inbox_rows).append(row)

    async def _known(self, session: AsyncSession, message_ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        ids = [m[:300] for m in message_ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            result = await session.execute(
                select(inbox.c.message_id).where(
                    inbox.c.consumer == self.consumer, inbox.c.message_id.in_(chunk)
                )
            )
            known.update(result.scalars())
        return known

    async def _flush(self, state: _BatchState) -> None:
        session = state.session
        await state.scope.flush()
        if state.inbox_rows:
            await session.execute(insert(inbox), state.inbox_rows)
        for row in state.inbox_updates:
            await session.execute(
                update(inbox)
                .where(inbox.c.consumer == row["consumer"], inbox.c.message_id == row["message_id"])
                .values(
                    outcome=row["outcome"], case_id=row["case_id"], processed_at=row["processed_at"]
                )
            )
        if state.aliases:
            dialect = postgresql if not self.database.is_sqlite else sqlite
            statement = dialect.insert(trace_keys).on_conflict_do_nothing(index_elements=["alias"])
            await session.execute(
                statement, [{"alias": a, "case_id": c} for a, c in state.aliases.items()]
            )
        await state.outbox.flush(session)

    def _committed(self, state: _BatchState) -> None:
        self.stats.messages += state.handled
        for deferred in state.logs:
            fields = {k: v for k, v in deferred.fields.items() if v is not None}
            getattr(log, deferred.level)(deferred.event, **fields)
        if self.on_commit is not None:
            self.on_commit()

    async def _retrying(self, attempt: Callable[[], Awaitable[None]]) -> None:
        delay = 0.1
        while True:
            try:
                await attempt()
                return
            except Exception as exc:
                if not is_transient(exc) or isinstance(exc, ShuttingDown):
                    raise
                self.stats.transient_failures += 1
                if self.stopping.is_set():
                    raise ShuttingDown("stopping while the database is unavailable") from exc
                log.warning(
                    "pipeline.transient_failure",
                    error=type(exc).__name__,
                    detail=scrub_text(str(exc))[:300],
                    retry_in_s=round(delay, 2),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                delay = min(delay * 2, 10.0)
