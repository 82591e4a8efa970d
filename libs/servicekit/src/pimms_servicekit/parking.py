"""Parking: a message that needs data not yet arrived waits in the database until it comes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit.messages import Incoming, headers_from_json, headers_to_json
from pimms_servicekit.storage import storable_text
from pimms_servicekit.tables import parked


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
