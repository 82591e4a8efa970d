"""The batch-native consume -> unit of work -> commit path.

The records one poll returns share one unit of work and one transaction: their inbox rows, their
effects and their outbox rows commit together, and only then are the offsets committed. A message
that fails in a way retrying cannot fix sends the batch back through one transaction per message,
so that this one message is dead-lettered and the others still commit; if even its dead letter
cannot be written, it is published straight to Kafka and the batch moves on. Database outages are
retried (capped backoff, the stall logged once and visible in readiness); the batch is never
half-applied. Statistics are counted after the commit.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from pimms_contracts import topics
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit import tracing
from pimms_servicekit.clock import Clock
from pimms_servicekit.db import BulkInsert, Database
from pimms_servicekit.dead_letters import DeadLetter, dead_letter
from pimms_servicekit.errors import is_transient
from pimms_servicekit.inbox import DEAD_LETTERED
from pimms_servicekit.logging import enabled as log_enabled
from pimms_servicekit.logging import get_logger, scrub_text
from pimms_servicekit.messages import BadMessage, Incoming
from pimms_servicekit.metrics import Metrics
from pimms_servicekit.retry import Retrier
from pimms_servicekit.routing import Decoded, Decoder, Handlers
from pimms_servicekit.storage import storable_id
from pimms_servicekit.tables import trace_keys
from pimms_servicekit.unit_of_work import UnitOfWork, original_of

log = get_logger("pimms.pipeline")

R = TypeVar("R")

Meaning = Decoded[Any] | BadMessage | None


@dataclass
class PipelineStats:
    """Counters for health checks and benchmarks (counted after each commit)."""

    batches: int = 0
    messages: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    parked: int = 0
    isolated_batches: int = 0
    last_batch_at: float = 0.0


class _PoisonInBatch(Exception):
    pass


DeadLetterFallback = Callable[[DeadLetter], Awaitable[None]]


class BatchPipeline(Generic[R]):
    """Routes consumed records to handlers, batch by batch, through one unit of work."""

    def __init__(
        self,
        *,
        service: str,
        database: Database,
        clock: Clock,
        handlers: Handlers[R],
        repositories: Callable[[AsyncSession], R],
        consumer: str | None = None,
        on_commit: Callable[[UnitOfWork[R]], None] | None = None,
    ) -> None:
        self.service = service
        self.consumer = consumer or service
        self.database = database
        self.clock = clock
        self.handlers = handlers
        self.repositories = repositories
        self.decoders: dict[str, Decoder] = {}
        self.on_commit = on_commit
        self.dead_letter_fallback: DeadLetterFallback | None = None
        self.metrics: Metrics | None = None
        self.stopping = asyncio.Event()
        self.retrier = Retrier(name="pipeline", stopping=self.stopping)
        self.stats = PipelineStats()
        self._insert_aliases = BulkInsert(trace_keys, skip_existing=["alias"])

    def consume(self, topic: str, decoder: Decoder) -> None:
        """Read `topic` with `decoder`; its payloads go to the registered handlers."""
        self.decoders[topic] = decoder

    @property
    def topics(self) -> list[str]:
        """The topics this pipeline consumes."""
        return list(self.decoders)

    def unit_of_work(self, session: AsyncSession) -> UnitOfWork[R]:
        """A unit of work on `session` (batches, hooks, timers)."""
        uow = UnitOfWork(
            repos=self.repositories(session),
            session=session,
            service=self.service,
            consumer=self.consumer,
            clock=self.clock,
            insert_aliases=self._insert_aliases,
        )
        uow.set_replayer(self._replay)
        return uow

    async def process(self, records: Sequence[Any]) -> None:
        """Process what one poll returned (aiokafka ConsumerRecords)."""
        await self.process_incoming([Incoming.from_record(r) for r in records])

    async def process_incoming(self, incomings: Sequence[Incoming]) -> None:
        """Process already-built messages (the consumer, tests and tools)."""
        if not incomings:
            return
        started = time.perf_counter()
        try:
            await self.retrier.run(lambda: self._run_batch(list(incomings)))
        except _PoisonInBatch:
            self.stats.isolated_batches += 1
            log.warning("pipeline.isolating_batch", size=len(incomings), topic=incomings[0].topic)
            if self.metrics is not None:
                self.metrics.failed.labels(topic=incomings[0].topic).inc()
            for incoming in incomings:
                await self.retrier.run(functools.partial(self._run_isolated, incoming))
        self.stats.batches += 1
        self.stats.last_batch_at = time.monotonic()
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(incomings))
            self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _run_batch(self, incomings: list[Incoming]) -> None:
        try:
            async with self.database.transaction() as session:
                uow = self.unit_of_work(session)
                fresh = await self._fresh(uow, incomings)
                meanings = [self._decode(incoming) for incoming, _ in fresh]
                await self._prefetch(uow, meanings)
                for (incoming, again), meaning in zip(fresh, meanings, strict=True):
                    await self._apply(uow, incoming, meaning, again=again)
                await uow.flush()
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error(
                "pipeline.batch_failed", error=type(exc).__name__, detail=scrub_text(str(exc))
            )
            raise _PoisonInBatch from exc
        self._committed(uow)

    async def _run_isolated(self, incoming: Incoming) -> None:
        for attempt in range(3):
            try:
                async with self.database.transaction() as session:
                    uow = self.unit_of_work(session)
                    fresh = await self._fresh(uow, [incoming])
                    if not fresh:
                        return
                    meaning = self._decode(incoming)
                    await self._prefetch(uow, [meaning])
                    await self._apply(uow, incoming, meaning, again=fresh[0][1])
                    await uow.flush()
                self._committed(uow)
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
        try:
            async with self.database.transaction() as session:
                uow = self.unit_of_work(session)
                uow.queue_dead_letter(original_of(incoming), reason="processing_error", error=error)
                uow.inbox.record(
                    message_id=incoming.message_id,
                    topic=incoming.topic,
                    partition=incoming.partition,
                    offset=incoming.offset,
                    outcome=DEAD_LETTERED,
                    event_type=incoming.event_type,
                    case_id=None,
                    at=self.clock.now(),
                )
                await uow.flush()
            self._committed(uow)
        except Exception as failure:
            if is_transient(failure):
                raise
            # Even its dead letter cannot be stored: it still leaves the batch, straight to Kafka.
            await self._dead_letter_directly(incoming, error, failure)

    async def _dead_letter_directly(
        self, incoming: Incoming, error: str, failure: BaseException
    ) -> None:
        record = dead_letter(
            original_of(incoming),
            reason="processing_error",
            error=error,
            service=self.service,
            failed_at=self.clock.now(),
        )
        log.error(
            "message.dead_lettered_directly",
            kafka=incoming.position,
            dlt_topic=record.topic,
            store_error=type(failure).__name__,
        )
        if self.dead_letter_fallback is not None:
            await self.dead_letter_fallback(record)
        self.stats.dead_lettered += 1

    async def _fresh(
        self, uow: UnitOfWork[R], incomings: Sequence[Incoming]
    ) -> list[tuple[Incoming, bool]]:
        """The messages not seen before (a replay of a dead letter counts as new), with
        whether each has an inbox row already."""
        seen = await uow.inbox.seen(uow.session, [i.message_id for i in incomings])
        fresh: list[tuple[Incoming, bool]] = []
        taken: set[str] = set()
        for incoming in incomings:
            stored = storable_id(incoming.message_id)
            if stored in taken:
                uow.counts["duplicates"] += 1
                continue
            outcome = seen.get(stored)
            replayed = incoming.header(topics.REPLAY_OF) is not None
            if outcome is not None and not (replayed and outcome == DEAD_LETTERED):
                uow.counts["duplicates"] += 1
                uow.counts[f"duplicate\x1f{incoming.topic}"] += 1
                continue
            taken.add(stored)
            fresh.append((incoming, outcome is not None))
        return fresh

    def _decode(self, incoming: Incoming) -> Meaning:
        decoder = self.decoders.get(incoming.topic)
        if decoder is None:
            return BadMessage("unknown_topic", f"{self.service} does not read {incoming.topic}")
        try:
            return decoder(incoming)
        except BadMessage as bad:
            # Kept as the message's meaning until the commit: without the tracebacks (its own
            # and its cause's), which hold this batch's frames and so made a reference cycle
            # through the whole batch. Its reason and error say everything dead letters need.
            bad.__cause__ = bad.__context__ = None
            return bad.with_traceback(None)

    async def _prefetch(self, uow: UnitOfWork[R], meanings: Sequence[Meaning]) -> None:
        prefetch = getattr(uow.repos, "prefetch", None)
        if prefetch is None:
            return
        payloads = [m.payload for m in meanings if isinstance(m, Decoded)]
        if payloads:
            await prefetch(payloads)

    async def _replay(self, incoming: Incoming, uow: UnitOfWork[R]) -> None:
        """An unparked message, processed now inside `uow` (its inbox row is updated)."""
        meaning = self._decode(incoming)
        await self._prefetch(uow, [meaning])
        await self._apply(uow, incoming, meaning, again=True)

    async def _apply(
        self, uow: UnitOfWork[R], incoming: Incoming, meaning: Meaning, *, again: bool
    ) -> None:
        started = self.clock.now()  # the trace shows the message before what it caused
        with (
            tracing.consuming(incoming, service=self.service),
            structlog.contextvars.bound_contextvars(
                event_id=incoming.message_id[:300],
                event_type=incoming.event_type,
                correlation_id=incoming.correlation_id,
                case_id=None,
                kafka=incoming.position,
            ),
        ):
            if meaning is None:
                return
            if isinstance(meaning, BadMessage):
                uow.queue_dead_letter(
                    original_of(incoming), reason=meaning.reason, error=meaning.error
                )
                uow.inbox.record(
                    message_id=incoming.message_id,
                    topic=incoming.topic,
                    partition=incoming.partition,
                    offset=incoming.offset,
                    outcome=DEAD_LETTERED,
                    event_type=incoming.event_type,
                    case_id=None,
                    at=started,
                    again=again,
                )
                return
            handler = self.handlers.handler_for(meaning.payload)
            if handler is None:
                raise TypeError(f"no handler for {type(meaning.payload).__name__}")
            uow.begin_message(
                incoming,
                case_id=meaning.case_id,
                correlation_id=meaning.envelope.correlation_id if meaning.envelope else None,
                event_type=meaning.event_type,
            )
            frame = uow._frames[-1]
            structlog.contextvars.bind_contextvars(
                case_id=frame.case_id,
                correlation_id=frame.correlation_id,
                event_type=frame.event_type,
            )
            try:
                with tracing.handling(frame.event_type, case_id=frame.case_id):
                    await handler(meaning.payload, uow)
            finally:
                frame = uow.end_message()
            uow.inbox.record(
                message_id=incoming.message_id,
                topic=incoming.topic,
                partition=incoming.partition,
                offset=incoming.offset,
                outcome=frame.outcome,
                event_type=frame.event_type,
                case_id=frame.case_id,
                at=started,
                again=again,
            )
            uow.counts["handled"] += 1
            uow.counts[f"consumed\x1f{incoming.topic}"] += 1
            if frame.outcome == "handled" and not frame.logged and log_enabled("debug"):
                # A handler with nothing to say: the inbox row (`pimms trace`) records the
                # message; a line per message is for debugging (it was half of all log lines).
                uow.begin_message(
                    incoming,
                    case_id=frame.case_id,
                    correlation_id=frame.correlation_id,
                    event_type=frame.event_type,
                )
                uow.log("message.handled", level="debug", topic=incoming.topic)
                uow.end_message()

    def _committed(self, uow: UnitOfWork[R]) -> None:
        counts = uow.counts
        self.stats.messages += counts["handled"]
        self.stats.duplicates += counts["duplicates"]
        self.stats.dead_lettered += counts["dead_lettered"]
        self.stats.parked += counts["parked"]
        if self.metrics is not None:
            for key, value in counts.items():
                kind, _, rest = key.partition("\x1f")
                if kind == "consumed":
                    self.metrics.consumed.labels(topic=rest).inc(value)
                elif kind == "duplicate":
                    self.metrics.duplicates.labels(topic=rest).inc(value)
                elif kind == "dead":
                    topic, _, reason = rest.partition("\x1f")
                    self.metrics.dead_letters.labels(topic=topic, reason=reason).inc(value)
        uow.committed()
        if self.on_commit is not None:
            self.on_commit(uow)
