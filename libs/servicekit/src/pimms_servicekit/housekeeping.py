"""Housekeeping: the kit tables do not grow for ever.

Inbox rows, sent outbox rows and delivered (or given-up) effect rows older than a retention are
deleted by a background job, a few hundred rows per short transaction, so that the pipeline (which
shares the database, on SQLite its single writer lock) is never held up for long. Parked messages
are deleted when released; those whose data never comes are dead-lettered by `parking.expire`.

An inbox row must outlive the longest possible redelivery: Kafka keeps records 7 days by default,
so the inbox is kept 8 days (a consumer group reset to the earliest offset still finds its rows);
outbox and effect rows only serve `pimms trace` and support, 3 days.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Table, delete, select, tuple_

from pimms_servicekit import parking
from pimms_servicekit.clock import Clock
from pimms_servicekit.db import Database, padded
from pimms_servicekit.errors import is_transient
from pimms_servicekit.logging import get_logger
from pimms_servicekit.parking import ExpiredHook
from pimms_servicekit.settings import SettingsError
from pimms_servicekit.tables import effects, inbox, outbox

if TYPE_CHECKING:
    from pimms_servicekit.unit_of_work import UnitOfWork

__all__ = ["ExpiredHook", "Housekeeper", "Purged", "Retention", "purge", "retention_from_env"]

log = get_logger("pimms.housekeeping")

RETENTION_INBOX_DAYS = "PIMMS_RETENTION_INBOX_DAYS"
RETENTION_OUTBOX_DAYS = "PIMMS_RETENTION_OUTBOX_DAYS"
RETENTION_EFFECTS_DAYS = "PIMMS_RETENTION_EFFECTS_DAYS"
PARKED_MAX_HOURS = "PIMMS_PARKED_MAX_HOURS"
HOUSEKEEPING_INTERVAL_S = "PIMMS_HOUSEKEEPING_INTERVAL_S"


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of kit row is kept, and how the purge paces itself."""

    inbox: timedelta = timedelta(days=8)
    outbox: timedelta = timedelta(days=3)
    effects: timedelta = timedelta(days=3)
    parked_max: timedelta = timedelta(hours=24)
    batch_size: int = 500
    interval_s: float = 300.0
    pause_s: float = 0.05


def retention_from_env(environ: Mapping[str, str] | None = None) -> Retention:
    """The retention the environment asks for; SettingsError names a wrong variable."""
    env = os.environ if environ is None else environ
    default = Retention()
    inbox_days = _positive(env, RETENTION_INBOX_DAYS, default.inbox / timedelta(days=1))
    outbox_days = _positive(env, RETENTION_OUTBOX_DAYS, default.outbox / timedelta(days=1))
    effects_days = _positive(env, RETENTION_EFFECTS_DAYS, outbox_days)
    parked_hours = _positive(env, PARKED_MAX_HOURS, default.parked_max / timedelta(hours=1))
    interval = _positive(env, HOUSEKEEPING_INTERVAL_S, default.interval_s)
    return Retention(
        inbox=timedelta(days=inbox_days),
        outbox=timedelta(days=outbox_days),
        effects=timedelta(days=effects_days),
        parked_max=timedelta(hours=parked_hours),
        interval_s=interval,
    )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"{name} must be a positive number, got {raw!r}")
    return value


@dataclass
class Purged:
    """How many rows one purge deleted, per table."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All tables together."""
        return sum(self.counts.values())


def _purges(retention: Retention, now: datetime) -> list[tuple[str, Table, ColumnElement[bool]]]:
    return [
        ("inbox", inbox, inbox.c.processed_at < now - retention.inbox),
        (
            "outbox",
            outbox,
            outbox.c.sent_at.is_not(None) & (outbox.c.sent_at < now - retention.outbox),
        ),
        (
            "effects",
            effects,
            effects.c.done_at.is_not(None) & (effects.c.done_at < now - retention.effects),
        ),
    ]


async def purge(database: Database, *, retention: Retention, now: datetime) -> Purged:
    """Delete the rows older than their retention, `retention.batch_size` per transaction."""
    purged = Purged()
    for name, table, old in _purges(retention, now):
        keys = list(table.primary_key.columns)
        total = 0
        while True:
            async with database.transaction() as session:
                rows = (
                    await session.execute(select(*keys).where(old).limit(retention.batch_size))
                ).all()
                if rows:
                    await session.execute(delete(table).where(_among(keys, rows)))
            total += len(rows)
            if len(rows) < retention.batch_size:
                break
            await asyncio.sleep(retention.pause_s)  # let the pipeline have the database
        purged.counts[name] = total
    return purged


def _among(keys: list[Any], rows: Sequence[Any]) -> ColumnElement[bool]:
    if len(keys) == 1:
        return keys[0].in_(padded([r[0] for r in rows]))  # type: ignore[no-any-return]
    return tuple_(*keys).in_(padded([tuple(r) for r in rows]))


class Housekeeper:
    """The background job: expire parked messages, then purge old rows, every interval."""

    def __init__(
        self,
        *,
        database: Database,
        clock: Clock,
        retention: Retention,
        in_unit_of_work: Callable[[Callable[[UnitOfWork[Any]], Awaitable[None]]], Awaitable[None]],
        on_parked_expired: Callable[[], ExpiredHook | None] = lambda: None,
    ) -> None:
        self.database = database
        self.clock = clock
        self.retention = retention
        self.in_unit_of_work = in_unit_of_work
        self.on_parked_expired = on_parked_expired
        self.outage_since: float | None = None

    def _on_platform_time(self) -> Retention:
        """Rows are stamped in platform time, but retention protects against redeliveries, which
        come in real time: on a steered clock (x N) the kept periods are N times longer, or a
        demo at x43,200 would forget what it processed 16 seconds ago."""
        scale = float(getattr(self.clock, "scale", 1.0))
        if scale <= 1.0:
            return self.retention
        longest = timedelta(days=36_500)  # (now - retention) must stay a date

        def scaled(kept: timedelta) -> timedelta:
            return min(kept * scale, longest)

        return dataclasses.replace(
            self.retention,
            inbox=scaled(self.retention.inbox),
            outbox=scaled(self.retention.outbox),
            effects=scaled(self.retention.effects),
        )

    async def expire_parked(self) -> int:
        """Dead-letter one bounded batch of messages parked too long; return how many."""
        expired: list[int] = []

        async def work(uow: UnitOfWork[Any]) -> None:
            expired.append(
                await parking.expire(
                    uow,
                    max_age=self.retention.parked_max,
                    on_expired=self.on_parked_expired(),
                )
            )

        await self.in_unit_of_work(work)
        return sum(expired)

    async def run_once(self) -> tuple[int, Purged]:
        """One round: how many parked messages expired, and what was purged."""
        expired = 0
        while True:
            count = await self.expire_parked()
            expired += count
            if count == 0:
                break
            await asyncio.sleep(self.retention.pause_s)
        purged = await purge(
            self.database, retention=self._on_platform_time(), now=self.clock.now()
        )
        if expired or purged.total:
            log.info("housekeeping.done", parked_expired=expired, **purged.counts)
        return expired, purged

    async def run(self) -> None:
        """`run_once` every `retention.interval_s` seconds; an outage is said once, then waited."""
        while True:
            try:
                await self.run_once()
                if self.outage_since is not None:
                    log.info(
                        "housekeeping.resumed",
                        deferred_s=round(time.monotonic() - self.outage_since, 1),
                    )
                    self.outage_since = None
            except Exception as exc:
                if not is_transient(exc):  # a bug: said every round (rare), the pipeline goes on
                    log.error("housekeeping.failed", error=type(exc).__name__)
                elif self.outage_since is None:
                    self.outage_since = time.monotonic()
                    log.warning("housekeeping.deferred", error=type(exc).__name__)
            await asyncio.sleep(self.retention.interval_s)
