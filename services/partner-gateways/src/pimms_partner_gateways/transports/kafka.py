"""Kafka feeds: the partner's payload alone, keyed by the referral reference, no CloudEvents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pimms_servicekit.hooks import Hook

from pimms_partner_gateways.transports.base import PartnerMessage, Postbox


@dataclass(frozen=True)
class KafkaFeed:
    """A partner's referrals topic (the hook runs when Kafka acknowledged the message)."""

    topic: str
    kind: Literal["kafka"] = "kafka"

    def send(self, postbox: Postbox, message: PartnerMessage, *, hook: Hook) -> None:
        """Publish the payload on the partner's feed once the transaction commits."""
        postbox.publish(
            topic=self.topic,
            key=message.key,
            value=message.payload,
            event_type=message.event_type,
            detail=message.detail,
            hook=hook,
        )
