"""The inbox: every consumed message recorded by (consumer, message id), with its effects.

A redelivered message finds its row and has no second effect. A message re-published from dead
letters (`pimms dead-letters replay`, header `pimms_replay_of`) whose row says `dead_lettered` is
processed again, once: its row is then updated with the new outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit.storage import storable_id, storable_text
from pimms_servicekit.tables import inbox

DEAD_LETTERED = "dead_lettered"


@dataclass
class InboxBatch:
    """The inbox rows of one batch, written in bulk at its end."""

    consumer: str
    new: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)

    async def seen(self, session: AsyncSession, message_ids: Sequence[str]) -> dict[str, str]:
        """The outcome recorded for each of these ids that was seen before."""
        known: dict[str, str] = {}
        ids = sorted({storable_id(m) for m in message_ids})
        for start in range(0, len(ids), 500):
            rows = await session.execute(
                select(inbox.c.message_id, inbox.c.outcome).where(
                    inbox.c.consumer == self.consumer,
                    inbox.c.message_id.in_(ids[start : start + 500]),
                )
            )
            known.update({r.message_id: r.outcome for r in rows})
        return known

    def record(
        self,
        *,
        message_id: str,
        topic: str,
        partition: int,
        offset: int,
        outcome: str,
        event_type: str | None,
        case_id: str | None,
        at: datetime,
        again: bool = False,
    ) -> None:
        """Remember this message's outcome (`again`: it has a row already)."""
        row = {
            "consumer": self.consumer,
            "message_id": storable_id(message_id),
            "topic": storable_text(topic, limit=255),
            "partition": partition,
            "offset": offset,
            "event_type": storable_text(event_type, limit=200) or None,
            "case_id": storable_text(case_id, limit=64),
            "outcome": outcome,
            "processed_at": at,
        }
        (self.updates if again else self.new).append(row)

    async def flush(self, session: AsyncSession) -> None:
        """Write the rows."""
        if self.new:
            await session.execute(insert(inbox), self.new)
        for row in self.updates:
            await session.execute(
                update(inbox)
                .where(inbox.c.consumer == row["consumer"], inbox.c.message_id == row["message_id"])
                .values(
                    outcome=row["outcome"],
                    case_id=row["case_id"],
                    processed_at=row["processed_at"],
                    topic=row["topic"],
                    partition=row["partition"],
                    offset=row["offset"],
                )
            )
