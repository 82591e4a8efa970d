"""The unit of work of one batch: what its handlers may read and do, all committed at once.

A handler receives its payload and the unit of work: it asks `uow.repos` (the service's
repositories, built once per batch and able to prefetch for the whole batch) and records what
must happen: events to publish (`emit`, `publish`), effects to deliver after the commit
(`dispatch`), messages to keep until their data arrives (`park`, `release`), dead letters, log
lines. None of it leaves the process before the transaction commits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import structlog
from pimms_contracts.base import Event
from pimms_contracts.envelope import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit import parking, tracing
from pimms_servicekit.clock import Clock
from pimms_servicekit.dead_letters import Original, dead_letter
from pimms_servicekit.effects import EffectBuffer
from pimms_servicekit.hooks import Hook, HookCall
from pimms_servicekit.inbox import InboxBatch
from pimms_servicekit.logging import get_logger
from pimms_servicekit.messages import Incoming, new_id
from pimms_servicekit.outbox import OutboxBuffer
from pimms_servicekit.storage import storable_text
from pimms_servicekit.tables import trace_keys

log = get_logger("pimms.pipeline")

# Above this many distinct parked keys, each release asks the database for its own key.
_PARKED_KEYS_LIMIT = 2_000

R = TypeVar("R")


@dataclass
class _Deferred:
    level: str
    event: str
    fields: dict[str, Any]


@dataclass
class _Frame:
    """The message being handled (None for a hook): what the events it causes inherit."""

    incoming: Incoming | None
    case_id: str | None
    correlation_id: str
    event_type: str | None
    outcome: str = "handled"
    causation_id: str | None = None  # a hook's: the message that queued its effect
    logged: bool = False
    traceparent: str | None = None  # a hook's trace (messages carry theirs in headers)

    @property
    def cause(self) -> str | None:
        """What the events emitted now are caused by."""
        return self.incoming.message_id if self.incoming is not None else self.causation_id


# Given the unit of work rather than closing over it: a closure kept on the unit of work made a
# reference cycle, so every batch's objects waited for a full collection (RSS grew by about
# 5 MB per 10,000 needs on a long backlog).
Replayer = Callable[[Incoming, "UnitOfWork[Any]"], Awaitable[None]]


class UnitOfWork(Generic[R]):
    """One batch's repositories, outbox, effects, inbox and parking, in one transaction."""

    def __init__(
        self,
        *,
        repos: R,
        session: AsyncSession,
        service: str,
        consumer: str,
        clock: Clock,
        insert_aliases: Any,
    ) -> None:
        self.repos = repos
        self.service = service
        self.clock = clock
        self.outbox = OutboxBuffer(source=f"urn:pimms:{service}", clock=clock)
        self.effects = EffectBuffer(clock=clock)
        self.inbox = InboxBatch(consumer=consumer)
        self.counts: Counter[str] = Counter()
        self._session = session
        self._insert_aliases = insert_aliases
        self._aliases: dict[str, str] = {}
        self._logs: list[_Deferred] = []
        self._frames: list[_Frame] = []
        self._replayer: Replayer | None = None
        self._parked_keys_read = False
        self._parked_keys: set[str] | None = None

    # -- what handlers use ------------------------------------------------------------------

    def now(self) -> datetime:
        """The current (platform) time."""
        return self.clock.now()

    @property
    def case_id(self) -> str | None:
        """The case the current message is about, when known."""
        return self._frame.case_id

    @property
    def correlation_id(self) -> str:
        """The case journey's correlation id (set at intake, inherited by every event)."""
        return self._frame.correlation_id

    @property
    def message_id(self) -> str:
        """The id of the message being handled (stable across redeliveries)."""
        incoming = self._frame.incoming
        return incoming.message_id if incoming is not None else ""

    def about_case(self, case_id: str, *, correlation_id: str | None = None) -> None:
        """The current message turned out to be about this case (bound to later log lines)."""
        frame = self._frame
        frame.case_id = case_id
        if correlation_id:
            frame.correlation_id = correlation_id
        structlog.contextvars.bind_contextvars(case_id=case_id, correlation_id=frame.correlation_id)

    def emit(
        self,
        event: Event,
        *,
        topic: str,
        key: str,
        detail: str | None = None,
        hook: Hook | None = None,
        event_id: str | None = None,
    ) -> Envelope:
        """Publish a platform event after the commit, caused by the current message."""
        frame = self._frame
        return self.outbox.event(
            event,
            topic=topic,
            key=key,
            case_id=frame.case_id,
            correlation_id=frame.correlation_id,
            causation_id=frame.cause,
            detail=detail,
            on_sent=self._hook_call(hook),
            event_id=event_id,
            extra_headers=self._trace_headers(topic=topic, event_type=event.ce_type),
        )

    def publish(
        self,
        *,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        event_type: str,
        headers: Sequence[tuple[str, bytes]] = (),
        detail: str | None = None,
        hook: Hook | None = None,
    ) -> None:
        """Publish bytes in someone else's format (a partner's feed) after the commit."""
        self.outbox.raw(
            topic=topic,
            key=key,
            value=value,
            headers=headers,  # a partner's payload alone (specs/partners.md): no trace header
            case_id=self._frame.case_id,
            event_type=event_type,
            detail=detail,
            on_sent=self._hook_call(hook),
        )

    def dispatch(
        self,
        *,
        destination: str,
        idempotency_key: str,
        payload: bytes,
        detail: str | None = None,
        hook: Hook | None = None,
        not_before: datetime | None = None,
    ) -> None:
        """Deliver `payload` to `destination` (a channel, a partner's endpoint) after the commit."""
        self.effects.add(
            destination=destination,
            idempotency_key=idempotency_key,
            payload=payload,
            case_id=self._frame.case_id,
            detail=detail,
            hook=self._hook_call(hook),
            not_before=not_before,
        )

    def dead_letter(self, *, reason: str, error: str, original: Original | None = None) -> None:
        """Send a message (the current one by default) to `<its topic>.dlt`, with the reason."""
        frame = self._frame
        if original is None:
            if frame.incoming is None:
                raise ValueError("no current message to dead-letter")
            original = _original(frame.incoming)
            frame.outcome = "dead_lettered"
        self.queue_dead_letter(original, reason=reason, error=error, case_id=frame.case_id)

    async def park(self, *, key: str, reason: str) -> None:
        """Keep the current message until `release(key)`: it needs what has not arrived yet."""
        frame = self._frame
        if frame.incoming is None:
            raise ValueError("no current message to park")
        await parking.park(self._session, frame.incoming, key=key, reason=reason, at=self.now())
        if self._parked_keys is not None:
            self._parked_keys.add(storable_text(key, limit=200) or "")
        frame.outcome = "parked"
        self.counts["parked"] += 1
        self.log("message.parked", reason=reason)

    async def release(self, *, key: str) -> int:
        """Process now, in this unit of work, the messages parked under `key`; return how many.

        The parked keys are read once per unit of work (parking is rare: most releases find
        nothing, and a statement per message was a tenth of a busy service's CPU)."""
        if not self._parked_keys_read:
            self._parked_keys_read = True
            self._parked_keys = await parking.parked_keys(self._session, limit=_PARKED_KEYS_LIMIT)
        stored = storable_text(key, limit=200) or ""
        if self._parked_keys is not None and stored not in self._parked_keys:
            return 0
        messages = await parking.unpark(self._session, key=key)
        if self._parked_keys is not None:
            self._parked_keys.discard(stored)
        if messages and self._replayer is None:
            raise RuntimeError("this unit of work cannot replay parked messages")
        for message in messages:
            assert self._replayer is not None
            await self._replayer(message, self)
        return len(messages)

    def alias(self, alias: str) -> None:
        """Let `pimms trace <alias>` find the current case (a submission id, a reference)."""
        case_id = self._frame.case_id
        if case_id:
            self._aliases[storable_text(alias, limit=200) or ""] = case_id

    def log(self, event: str, *, level: str = "info", **fields: Any) -> None:
        """Log after the commit, so that the logs tell only what really happened."""
        bound = dict(structlog.contextvars.get_contextvars())
        frame = self._frames[-1] if self._frames else None
        if frame is not None:
            bound.update(case_id=frame.case_id, correlation_id=frame.correlation_id)
            frame.logged = True
        self._logs.append(_Deferred(level=level, event=event, fields={**bound, **fields}))

    # -- what the pipeline uses -------------------------------------------------------------

    @property
    def session(self) -> AsyncSession:
        """The batch's session: for repositories and the pipeline, never for handlers."""
        return self._session

    def begin_message(
        self,
        incoming: Incoming,
        *,
        case_id: str | None,
        correlation_id: str | None,
        event_type: str | None,
    ) -> None:
        """The pipeline starts handling `incoming`."""
        self._frames.append(
            _Frame(
                incoming=incoming,
                case_id=case_id,
                correlation_id=correlation_id or incoming.correlation_id or new_id(),
                event_type=event_type,
            )
        )

    def begin_hook(
        self, *, case_id: str | None, correlation_id: str | None, causation_id: str | None = None
    ) -> None:
        """A hook starts running (no message: what it emits inherits the stored journey)."""
        self._frames.append(
            _Frame(
                incoming=None,
                case_id=case_id,
                correlation_id=correlation_id or new_id(),
                event_type=None,
                causation_id=causation_id,
            )
        )

    def end_message(self) -> _Frame:
        """The current message or hook is done: its frame, with the outcome."""
        return self._frames.pop()

    def set_replayer(self, replayer: Replayer) -> None:
        """How `release` processes unparked messages."""
        self._replayer = replayer

    def queue_dead_letter(
        self, original: Original, *, reason: str, error: str, case_id: str | None = None
    ) -> None:
        """Queue the dead letter of `original` and its log line."""
        record = dead_letter(
            original, reason=reason, error=error, service=self.service, failed_at=self.now()
        )
        self.outbox.raw(
            topic=record.topic,
            key=record.key,
            value=record.value,
            headers=record.headers,
            case_id=case_id,
            event_type="dead_letter",
            detail=storable_text(f"{reason}: {error}", limit=500),
        )
        self.counts["dead_lettered"] += 1
        self.counts[f"dead\x1f{original.topic}\x1f{reason}"] += 1
        bound = dict(structlog.contextvars.get_contextvars())
        self._logs.append(
            _Deferred(
                level="warning",
                event="message.dead_lettered",
                fields={
                    **bound,
                    "reason": reason,
                    "error": error,
                    "dlt_topic": record.topic,
                    "case_id": case_id or bound.get("case_id"),
                },
            )
        )

    async def flush(self) -> None:
        """Write everything recorded, before the commit."""
        flush = getattr(self.repos, "flush", None)
        if flush is not None:
            await flush()
        await self.inbox.flush(self._session)
        if self._aliases:
            await self._insert_aliases(
                self._session, [{"alias": a, "case_id": c} for a, c in self._aliases.items()]
            )
        await self.outbox.flush(self._session)
        await self.effects.flush(self._session)

    def committed(self) -> None:
        """After the commit: write the deferred log lines."""
        for deferred in self._logs:
            fields = {k: v for k, v in deferred.fields.items() if v is not None}
            getattr(log, deferred.level)(deferred.event, **fields)
        self._logs.clear()

    @property
    def _frame(self) -> _Frame:
        if not self._frames:
            raise RuntimeError("the unit of work is used outside a message or hook")
        return self._frames[-1]

    def _trace_headers(self, *, topic: str, event_type: str) -> list[tuple[str, bytes]]:
        """`traceparent` continuing the trace of what caused this (see `tracing`)."""
        frame = self._frame
        incoming = frame.incoming.header(tracing.HEADER) if frame.incoming else frame.traceparent
        traceparent = tracing.outgoing_traceparent(
            incoming=incoming,
            correlation_id=frame.correlation_id,
            topic=topic,
            event_type=event_type,
        )
        return [(tracing.HEADER, traceparent.encode())]

    def _hook_call(self, hook: Hook | None) -> dict[str, Any] | None:
        if hook is None:
            return None
        frame = self._frame
        return HookCall(
            name=hook.name,
            data=hook.model_dump(mode="json"),
            case_id=frame.case_id,
            correlation_id=frame.correlation_id,
            causation_id=frame.cause,
        ).to_json()


def _original(incoming: Incoming) -> Original:
    return Original(
        topic=incoming.topic,
        partition=incoming.partition,
        offset=incoming.offset,
        key=incoming.key,
        value=incoming.value,
        headers=incoming.headers,
    )


def original_of(incoming: Incoming) -> Original:
    """Where `incoming` was read and its bytes (to dead-letter it later)."""
    return _original(incoming)


ALIASES_TABLE = trace_keys
