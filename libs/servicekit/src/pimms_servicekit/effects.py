"""Effects other than Kafka messages (an SMS, an e-mail, a partner's webhook call or file), after
the commit: each is an outbox row naming its destination, delivered by that destination's
dispatcher with its own retry policy.

A dispatcher claims the due rows of its destination, delivers them concurrently (bounded) outside
any transaction, and records each outcome: delivered (its `delivered` hook runs), a transient
failure (tried again later with exponential backoff and jitter, durably: the next attempt time is
in the row, so a restart continues the schedule), or a permanent failure or the attempt cap (its
`failed` hook runs). Every destination has its own loop, so one partner or provider being down
never slows the others. Deliveries carry an idempotency key: a re-delivery after a crash between
the delivery and its recording is harmless at the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit.clock import Clock
from pimms_servicekit.db import BulkInsert, BulkUpdate, padded
from pimms_servicekit.errors import is_transient
from pimms_servicekit.hooks import HookCall, Hooks, Outcome
from pimms_servicekit.logging import get_logger, scrub_text
from pimms_servicekit.outbox import IDLE_POLL_MAX_S
from pimms_servicekit.storage import storable_text
from pimms_servicekit.tables import effects

if TYPE_CHECKING:
    from pimms_servicekit.db import Database
    from pimms_servicekit.unit_of_work import UnitOfWork

log = get_logger("pimms.effects")

_INSERT = BulkInsert(effects)  # built once (see inbox)


@dataclass(frozen=True, slots=True)
class Effect:
    """One effect to deliver."""

    id: int
    destination: str
    idempotency_key: str
    payload: bytes
    case_id: str | None
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivered:
    """The receiver has it (`receipt`: its reference, e.g. the SMS provider's message id)."""

    receipt: str | None = None


@dataclass(frozen=True, slots=True)
class RetryLater:
    """A failure that may pass (5xx, timeout, connection refused): try again later."""

    reason: str
    after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A failure that retrying cannot fix (4xx other than 429, a refused address)."""

    reason: str


DeliveryResult = Delivered | RetryLater | Failed


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long a destination is retried."""

    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=10)
    max_attempts: int = 10
    give_up_after: timedelta | None = None
    concurrency: int = 8
    attempt_timeout: float = 30.0
    jitter: float = 0.2

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        """The wait before attempt `attempts + 1` (exponential, capped, with jitter)."""
        base = min(self.first_delay * (2 ** max(attempts - 1, 0)), self.max_delay)
        spread = base.total_seconds() * self.jitter
        return timedelta(seconds=max(base.total_seconds() + rng.uniform(-spread, spread), 0.0))


class Destination(Protocol):
    """Where effects go: a notification channel, a partner's endpoint or folder."""

    @property
    def name(self) -> str:
        """The destination name stored in outbox rows (e.g. `sms`, `partner:sncf`)."""
        ...

    @property
    def policy(self) -> RetryPolicy:
        """Its retry policy."""
        ...

    async def deliver(self, effect: Effect) -> DeliveryResult:
        """Deliver one effect; never raise for a receiver's refusal, return `Failed`."""
        ...


@runtime_checkable
class BatchDestination(Destination, Protocol):
    """A destination that takes a round of effects in one call: a partner's export file of many
    lines, message files (one thread hop and one sync for the round, where one each per file
    cost more than the rest of the service)."""

    async def deliver_batch(self, effects: Sequence[Effect]) -> Sequence[DeliveryResult]:
        """Deliver `effects` together; one result per effect, in the same order; never raise
        for a refusal."""
        ...


class EffectBuffer:
    """Effect rows to add in the current transaction."""

    def __init__(self, *, clock: Clock) -> None:
        self.clock = clock
        self.rows: list[dict[str, Any]] = []
        self.destinations: set[str] = set()  # of the rows inserted: only their dispatchers wake

    def add(
        self,
        *,
        destination: str,
        idempotency_key: str,
        payload: bytes,
        case_id: str | None,
        detail: str | None,
        hook: dict[str, Any] | None,
        not_before: datetime | None,
    ) -> None:
        """Queue an effect, due now or at `not_before`."""
        now = self.clock.now()
        self.rows.append(
            {
                "destination": destination,
                "idempotency_key": storable_text(idempotency_key, limit=200),
                "payload": payload,
                "case_id": case_id,
                "detail": storable_text(detail, limit=500),
                "hook": hook,
                "attempts": 0,
                "next_attempt_at": max(not_before, now) if not_before else now,
                "created_at": now,
            }
        )

    async def flush(self, session: AsyncSession) -> int:
        """Insert the queued rows; return how many."""
        count = len(self.rows)
        if self.rows:
            await _INSERT(session, self.rows)
            self.destinations.update(row["destination"] for row in self.rows)
            self.rows = []
        return count


@dataclass
class DispatchStats:
    """What a dispatcher did."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    in_flight: int = 0


UowFactory = Callable[[AsyncSession], "UnitOfWork[Any]"]


class EffectDispatcher:
    """Delivers one destination's effects after their commit."""

    def __init__(
        self,
        *,
        destination: Destination,
        database: Database,
        clock: Clock,
        hooks: Hooks[Any],
        make_uow: UowFactory,
        poll_interval: float = 0.2,
        lease: timedelta = timedelta(minutes=2),
        rng: random.Random | None = None,
    ) -> None:
        self.destination = destination
        self.database = database
        self.clock = clock
        self.hooks = hooks
        self.make_uow = make_uow
        self.poll_interval = poll_interval
        self.lease = lease
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.stats = DispatchStats()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.on_outcome: Callable[[str, str], None] | None = None
        # After a commit of hooks' work: wake whoever has new rows (the relay, other dispatchers).
        self.on_committed: Callable[[UnitOfWork[Any]], None] | None = None

    @property
    def name(self) -> str:
        """The destination's name."""
        return self.destination.name

    def notify(self) -> None:
        """New effects were committed: look soon."""
        self._wake.set()

    def request_stop(self) -> None:
        """Finish the current round (its outcomes recorded), then leave `run`."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Deliver due effects until cancelled."""
        delay = self.poll_interval
        idle = self.poll_interval  # grows while rounds find nothing (see IDLE_POLL_MAX_S)
        outage_since: float | None = None  # an outage is logged when it starts and when it ends
        while not self._stopping.is_set():
            try:
                count = await self.deliver_due()
                delay = idle = min(idle * 2, IDLE_POLL_MAX_S) if count == 0 else self.poll_interval
                if outage_since is not None:
                    log.info(
                        "effects.dispatch_recovered",
                        destination=self.name,
                        stalled_s=round(time.monotonic() - outage_since, 1),
                    )
                    outage_since = None
                if count:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning(
                        "effects.dispatch_failed",
                        destination=self.name,
                        error=type(exc).__name__,
                        detail=scrub_text(str(exc))[:300],
                        retry_in_s=round(delay, 2),
                    )
                delay = min(delay * 2, 10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
                idle = self.poll_interval
            self._wake.clear()

    async def deliver_due(self, *, limit: int | None = None) -> int:
        """Claim, deliver and record the effects due now; return how many were attempted."""
        batch = await self._claim(limit or self.destination.policy.concurrency * 4)
        if not batch:
            return 0
        self.stats.in_flight += len(batch)
        try:
            if isinstance(self.destination, BatchDestination):
                results = await self._attempt_batch(self.destination, batch)
            else:
                semaphore = asyncio.Semaphore(self.destination.policy.concurrency)

                async def one(effect: Effect) -> tuple[Effect, DeliveryResult]:
                    async with semaphore:
                        return effect, await self._attempt(effect)

                results = await asyncio.gather(*(one(e) for e in batch))
        finally:
            self.stats.in_flight -= len(batch)
        await self._record_until_done(results)
        return len(batch)

    async def _record_until_done(self, results: Sequence[tuple[Effect, DeliveryResult]]) -> None:
        """Record outcomes, waiting out a database outage: what was delivered is not lost to the
        lease (which would deliver it again only minutes later)."""
        delay = self.poll_interval
        while True:
            try:
                await self._record(results)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _attempt(self, effect: Effect) -> DeliveryResult:
        policy = self.destination.policy
        try:
            return await asyncio.wait_for(
                self.destination.deliver(effect), timeout=policy.attempt_timeout
            )
        except TimeoutError:
            return RetryLater(reason="timeout")
        except Exception as exc:  # a bug or an unexpected error of the channel: retry, say so
            log.error(
                "effects.delivery_error",
                destination=self.name,
                effect_id=effect.id,
                error=type(exc).__name__,
                detail=scrub_text(str(exc))[:300],
            )
            return RetryLater(reason=f"error:{type(exc).__name__}")

    async def _attempt_batch(
        self, destination: BatchDestination, batch: Sequence[Effect]
    ) -> list[tuple[Effect, DeliveryResult]]:
        """A round delivered at once: the attempt timeout and an unexpected error apply to the
        whole round (each effect is tried again later)."""
        try:
            results = await asyncio.wait_for(
                destination.deliver_batch(batch), timeout=destination.policy.attempt_timeout
            )
        except TimeoutError:
            return [(effect, RetryLater(reason="timeout")) for effect in batch]
        except Exception as exc:
            log.error(
                "effects.delivery_error",
                destination=self.name,
                effects=len(batch),
                error=type(exc).__name__,
                detail=scrub_text(str(exc))[:300],
            )
            return [(effect, RetryLater(reason=f"error:{type(exc).__name__}")) for effect in batch]
        if len(results) != len(batch):
            log.error(
                "effects.batch_mismatch",
                destination=self.name,
                effects=len(batch),
                results=len(results),
            )
            return [(effect, RetryLater(reason="error:batch_mismatch")) for effect in batch]
        return list(zip(batch, results, strict=True))

    async def _claim(self, limit: int) -> list[Effect]:
        now = self.clock.now()
        async with self.database.transaction() as session:
            query = (
                select(effects)
                .where(
                    effects.c.destination == self.name,
                    effects.c.done_at.is_(None),
                    effects.c.next_attempt_at <= now,
                )
                .order_by(effects.c.id)
                .limit(limit)
            )
            if not self.database.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if not rows:
                return []
            # The lease: another instance (or this one after a crash) takes it back when it ends.
            await session.execute(
                update(effects)
                .where(effects.c.id.in_(padded([r.id for r in rows])))
                .values(next_attempt_at=now + self.lease)
            )
        return [
            Effect(
                id=r.id,
                destination=r.destination,
                idempotency_key=r.idempotency_key,
                payload=r.payload,
                case_id=r.case_id,
                attempts=r.attempts,
                created_at=r.created_at,
            )
            for r in rows
        ]

    async def _record(self, results: Sequence[tuple[Effect, DeliveryResult]]) -> None:
        now = self.clock.now()
        policy = self.destination.policy
        async with self.database.transaction() as session:
            uow = self.make_uow(session)
            hooks_rows = {
                r.id: r.hook
                for r in await session.execute(
                    select(effects.c.id, effects.c.hook).where(
                        effects.c.id.in_(padded([e.id for e, _ in results]))
                    )
                )
            }
            retried: list[dict[str, Any]] = []
            done: list[dict[str, Any]] = []
            hooked: list[tuple[HookCall, Outcome]] = []
            for effect, result in results:
                attempts = effect.attempts + 1
                if isinstance(result, RetryLater):
                    too_old = (
                        policy.give_up_after is not None
                        and now - effect.created_at >= policy.give_up_after
                    )
                    if attempts < policy.max_attempts and not too_old:
                        wait = result.after or policy.delay(attempts, self.rng)
                        retried.append(
                            {
                                "effect_id": effect.id,
                                "attempts": attempts,
                                "next_attempt_at": now + wait,
                                "last_error": storable_text(result.reason, limit=300),
                            }
                        )
                        self.stats.retried += 1
                        uow.log(
                            "effect.retry_scheduled",
                            level="warning",
                            destination=self.name,
                            effect_id=effect.id,
                            case_id=effect.case_id,
                            attempts=attempts,
                            reason=result.reason,
                            retry_in_s=round(wait.total_seconds(), 1),
                        )
                        continue
                    final: DeliveryResult = Failed(reason=f"gave_up:{result.reason}")
                else:
                    final = result
                delivered = isinstance(final, Delivered)
                receipt = final.receipt if isinstance(final, Delivered) else None
                reason = final.reason if isinstance(final, Failed) else None
                done.append(
                    {
                        "effect_id": effect.id,
                        "attempts": attempts,
                        "outcome": "delivered" if delivered else "failed",
                        "receipt": storable_text(receipt, limit=200),
                        "last_error": storable_text(reason, limit=300),
                    }
                )
                if self.on_outcome is not None:
                    self.on_outcome(self.name, "delivered" if delivered else "failed")
                if delivered:
                    self.stats.delivered += 1
                else:
                    self.stats.failed += 1
                    uow.log(
                        "effect.failed",
                        level="warning",
                        destination=self.name,
                        effect_id=effect.id,
                        case_id=effect.case_id,
                        attempts=attempts,
                        reason=reason,
                    )
                stored = hooks_rows.get(effect.id)
                if stored:
                    outcome = Outcome(
                        delivered=delivered,
                        at=now,
                        attempts=attempts,
                        receipt=receipt,
                        reason=reason,
                    )
                    hooked.append((HookCall.from_json(stored), outcome))
            # One statement for every outcome of the round, then the hooks.
            await _RETRY_LATER(session, retried)
            await _DONE(session, [{**row, "done_at": now} for row in done])
            await self.hooks.run_round(hooked, uow)
            await uow.flush()
        uow.committed()
        if self.on_committed is not None:
            self.on_committed(uow)


_RETRY_LATER = BulkUpdate(
    effects,
    match={"effect_id": "id"},
    assign={k: k for k in ("attempts", "next_attempt_at", "last_error")},
)
_DONE = BulkUpdate(
    effects,
    match={"effect_id": "id"},
    assign={k: k for k in ("attempts", "done_at", "outcome", "receipt", "last_error")},
)


async def effects_backlog(session: AsyncSession) -> int:
    """How many effects wait for delivery (for health and metrics)."""
    from sqlalchemy import func

    return int(
        (
            await session.execute(
                select(func.count()).select_from(effects).where(effects.c.done_at.is_(None))
            )
        ).scalar_one()
    )
