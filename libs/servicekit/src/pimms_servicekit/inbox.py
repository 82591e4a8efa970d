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

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit.db import BulkInsert, any_of, in_chunks
from pimms_servicekit.storage import storable_id, storable_text
from pimms_servicekit.tables import inbox

DEAD_LETTERED = "dead_lettered"

# Built once: building a statement and its cache key costs more than running it (about 0.2 ms
# of CPU each time on the reference machine, for every batch).
_SEEN = select(inbox.c.message_id, inbox.c.outcome).where(
    inbox.c.consumer == bindparam("consumer"),
    inbox.c.message_id.in_(bindparam("ids", expanding=True)),
)
# PostgreSQL: one array of ids, one statement text (see `any_of`).
_SEEN_ANY = select(inbox.c.message_id, inbox.c.outcome).where(
    inbox.c.consumer == bindparam("consumer"), any_of(inbox.c.message_id, "ids")
)
_INSERT = BulkInsert(inbox)


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
        if ids and session.get_bind().dialect.name == "postgresql":
            rows = await session.execute(_SEEN_ANY, {"consumer": self.consumer, "ids": ids})
            return {r.message_id: r.outcome for r in rows}
        for chunk in in_chunks(ids):
            rows = await session.execute(_SEEN, {"consumer": self.consumer, "ids": chunk})
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
            await _INSERT(session, self.new)
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
