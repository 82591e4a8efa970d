"""The SLA scheduler: a background job firing due timer rows, each pass in its own unit of work."""

from __future__ import annotations

import asyncio

from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.unit_of_work import UnitOfWork

from pimms_referrals import handlers
from pimms_referrals.adapters.repository import ReferralsRepos

Runtime = ServiceRuntime[ReferralsRepos]


async def fire_due_timers(runtime: Runtime, *, limit: int = 200) -> int:
    """One pass: fire the timers due now on the runtime's clock, in one transaction; how many."""
    fired = 0

    async def work(uow: UnitOfWork[ReferralsRepos]) -> None:
        nonlocal fired
        fired = await handlers.fire_due_timers(uow, limit=limit)

    await runtime.in_unit_of_work(work)
    return fired


async def run_scheduler(runtime: Runtime, *, interval: float, limit: int) -> None:
    """Fire due timers every `interval` seconds (at once again while a pass was full)."""
    while True:
        if await fire_due_timers(runtime, limit=limit) < limit:
            await asyncio.sleep(interval)
