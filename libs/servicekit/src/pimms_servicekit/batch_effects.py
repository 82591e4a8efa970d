"""Destinations that take their due effects together (a partner's export file of many lines).

A `BatchDestination` (in `effects`) is a `Destination` that also has `deliver_batch(effects)`:
every effect due now is handed over in one call (ordered by id) and one result comes back per
effect. Rows, leases, retries and hooks are the `EffectDispatcher`'s, unchanged: a crash after
the delivery and before its recording delivers the same effects again after the lease
(receivers deduplicate by key).

    runtime.deliver_to(destination)            # registers a per-effect dispatcher, then:
    deliver_batches_to(runtime, destination)   # replaces it by a batch dispatcher

Effects dispatched with the same `not_before` (an export slot) become due together and make one
batch.
"""

from __future__ import annotations

from typing import Any

from pimms_servicekit.effects import BatchDestination, EffectDispatcher

__all__ = ["BATCH_LIMIT", "BatchDestination", "BatchEffectDispatcher", "deliver_batches_to"]

BATCH_LIMIT = 5000


class BatchEffectDispatcher(EffectDispatcher):
    """Claims every due effect of its destination (up to `BATCH_LIMIT`, where the plain
    dispatcher claims a few rounds of its concurrency) and delivers them in one call."""

    destination: BatchDestination

    async def deliver_due(self, *, limit: int | None = None) -> int:
        """Claim, deliver together and record the effects due now; return how many."""
        return await super().deliver_due(limit=limit or BATCH_LIMIT)


def deliver_batches_to(runtime: Any, destination: BatchDestination) -> None:
    """Effects named for `destination` are delivered in batches by its own dispatcher."""
    runtime.deliver_to(destination)
    plain = runtime.dispatchers[destination.name]
    dispatcher = BatchEffectDispatcher(
        destination=destination,
        database=plain.database,
        clock=plain.clock,
        hooks=plain.hooks,
        make_uow=plain.make_uow,
        poll_interval=plain.poll_interval,
    )
    dispatcher.on_outcome = plain.on_outcome
    dispatcher.on_committed = plain.on_committed
    runtime.dispatchers[destination.name] = dispatcher
