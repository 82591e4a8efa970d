"""Parking: a message that needs data not yet arrived waits in the database until it comes.

What never comes (a status report for a dossier that was never sent) does not wait for ever:
`expire` dead-letters messages parked longer than a bound with reason `parked_too_long`, marks
their inbox row dead-lettered (so `pimms dead-letters replay` processes them again) and calls the
service's hook, in the same unit of work, so that it can tell whoever must know (the mediator).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit.db import padded
from pimms_servicekit.dead_letters import Original
from pimms_servicekit.messages import Incoming, headers_from_json, headers_to_json
from pimms_servicekit.storage import storable_id, storable_text
from pimms_servicekit.tables import inbox, parked

if TYPE_CHECKING:
    from pimms_servicekit.unit_of_work import UnitOfWork

PARKED_TOO_LONG = "parked_too_long"


async def park(
    session: AsyncSession, incoming: Incoming, *, key: str, reason: str, at: datetime
) -> None:
    """Keep `incoming` under `key` until `unpark(key)`."""
    await session.execute(
        insert(parked).values(
            park_key=storable_text(key, limit=200),
            topic=incoming.topic,
            partition=incoming.partition,
            offset=incoming.offset,
            timestamp_ms=incoming.timestamp_ms,
            key=incoming.key,
            value=incoming.value,
            headers=headers_to_json(incoming.headers),
            reason=reason,
            parked_at=at,
        )
    )


async def parked_keys(session: AsyncSession, *, limit: int) -> set[str] | None:
    """The keys messages are parked under, or None when there are more than `limit` of them
    (then each release asks for its own key)."""
    rows = await session.execute(select(parked.c.park_key).distinct().limit(limit + 1))
    keys = set(rows.scalars())
    return keys if len(keys) <= limit else None


async def unpark(session: AsyncSession, *, key: str) -> list[Incoming]:
    """The messages parked under `key`, in arrival order, removed from the parking."""
    stored_key = storable_text(key, limit=200)
    rows = (
        await session.execute(
            select(parked).where(parked.c.park_key == stored_key).order_by(parked.c.id)
        )
    ).all()
    if rows:
        await session.execute(delete(parked).where(parked.c.park_key == stored_key))
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


@dataclass(frozen=True, slots=True)
class ExpiredParking:
    """A parked message just dead-lettered because what it waited for never came."""

    case_id: str | None
    park_key: str
    topic: str
    event_type: str | None
    reason: str
    parked_at: datetime


ExpiredHook = Callable[[ExpiredParking, "UnitOfWork[Any]"], Awaitable[None]]


async def expire(
    uow: UnitOfWork[Any],
    *,
    max_age: timedelta,
    limit: int = 200,
    on_expired: ExpiredHook | None = None,
) -> int:
    """Dead-letter (`parked_too_long`) up to `limit` messages parked before now - `max_age`."""
    session = uow.session
    now = uow.now()
    query = (
        select(parked).where(parked.c.parked_at < now - max_age).order_by(parked.c.id).limit(limit)
    )
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)  # several instances share the table
    rows = (await session.execute(query)).all()
    if not rows:
        return 0
    messages = [_incoming(r) for r in rows]
    consumer = uow.inbox.consumer
    ids = {storable_id(m.message_id) for m in messages}
    cases = {
        r.message_id: r.case_id
        for r in await session.execute(
            select(inbox.c.message_id, inbox.c.case_id).where(
                inbox.c.consumer == consumer, inbox.c.message_id.in_(padded(ids))
            )
        )
    }
    await session.execute(delete(parked).where(parked.c.id.in_(padded([r.id for r in rows]))))
    await session.execute(
        update(inbox)
        .where(inbox.c.consumer == consumer, inbox.c.message_id.in_(padded(ids)))
        .values(outcome="dead_lettered", processed_at=now)
    )
    for row, message in zip(rows, messages, strict=True):
        case_id = cases.get(storable_id(message.message_id))
        waited = (now - row.parked_at).total_seconds() / 3600
        uow.queue_dead_letter(
            Original(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
                headers=message.headers,
            ),
            reason=PARKED_TOO_LONG,
            error=f"parked {waited:.1f} h ({row.reason}); what it waited for never came",
            case_id=case_id,
        )
        if on_expired is not None:
            await on_expired(
                ExpiredParking(
                    case_id=case_id,
                    park_key=row.park_key,
                    topic=message.topic,
                    event_type=message.event_type,
                    reason=row.reason,
                    parked_at=row.parked_at,
                ),
                uow,
            )
    return len(rows)


def _incoming(r: Any) -> Incoming:
    return Incoming(
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
        key=r.key,
        value=r.value,
        headers=tuple(headers_from_json(r.headers)),
        timestamp_ms=r.timestamp_ms,
    )
