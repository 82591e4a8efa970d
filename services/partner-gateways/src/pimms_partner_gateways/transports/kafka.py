"""Kafka feeds: the partner's payload alone, keyed by the referral reference, no CloudEvents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pimms_servicekit.pipeline import MessageContext


@dataclass(frozen=True)
class KafkaFeed:
    """A partner's referrals topic."""

    topic: str
    kind: Literal["kafka"] = "kafka"

    def send(
        self,
        ctx: MessageContext,
        *,
        key: str,
        payload: bytes,
        event_type: str,
        detail: str,
        on_sent: dict[str, Any],
    ) -> None:
        """Publish the payload on the partner's feed once the transaction commits."""
        ctx.send_raw(
            topic=self.topic,
            key=key,
            value=payload,
            event_type=event_type,
            detail=detail,
            on_sent=on_sent,
        )
