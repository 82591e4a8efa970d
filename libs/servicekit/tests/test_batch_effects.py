"""A destination that takes its due effects together: one call for the batch, a result each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pimms_servicekit.batch_effects import BatchEffectDispatcher
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.db import Database
from pimms_servicekit.effects import (
    Delivered,
    DeliveryResult,
    Effect,
    EffectBuffer,
    RetryLater,
    RetryPolicy,
)
from pimms_servicekit.hooks import Hooks
from pimms_servicekit.tables import effects, kit_metadata
from sqlalchemy import select

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


class Folder:
    """Writes every due line into one file; fails the first time if told to."""

    name = "partner:folder"
    policy = RetryPolicy(first_delay=timedelta(seconds=5), max_attempts=5)

    def __init__(self, *, fail_first: bool = False) -> None:
        self.files: list[list[bytes]] = []
        self.fail_first = fail_first

    async def deliver(self, effect: Effect) -> DeliveryResult:
        return (await self.deliver_batch([effect]))[0]

    async def deliver_batch(self, batch: Sequence[Effect]) -> Sequence[DeliveryResult]:
        if self.fail_first:
            self.fail_first = False
            return [RetryLater(reason="disk_full")] * len(batch)
        self.files.append([e.payload for e in batch])
        return [Delivered(receipt=f"file-{len(self.files)}")] * len(batch)


class _Uow:
    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def flush(self) -> None:
        pass

    def committed(self) -> None:
        pass


async def test_effects_due_together_make_one_batch_retried_together(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'kit.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(kit_metadata.create_all)
    clock = ManualClock(NOW)
    slot = NOW + timedelta(minutes=5)
    buffer = EffectBuffer(clock=clock)
    for line in (b"a", b"b", b"c"):
        buffer.add(
            destination="partner:folder",
            idempotency_key=line.decode(),
            payload=line,
            case_id=None,
            detail=None,
            hook=None,
            not_before=slot,
        )
    async with database.transaction() as session:
        await buffer.flush(session)
    folder = Folder(fail_first=True)
    dispatcher = BatchEffectDispatcher(
        destination=folder,
        database=database,
        clock=clock,
        hooks=Hooks(),
        make_uow=lambda s: _Uow(),  # type: ignore[arg-type,return-value]
    )
    assert await dispatcher.deliver_due() == 0  # not yet: the slot is in 5 minutes
    clock.advance(timedelta(minutes=5))
    assert await dispatcher.deliver_due() == 3  # one call, retried together
    assert folder.files == []
    clock.advance(timedelta(seconds=10))
    assert await dispatcher.deliver_due() == 3
    assert folder.files == [[b"a", b"b", b"c"]]
    async with database.transaction() as session:
        rows = (await session.execute(select(effects.c.outcome, effects.c.receipt))).all()
    assert [tuple(r) for r in rows] == [("delivered", "file-1")] * 3
    await database.dispose()
