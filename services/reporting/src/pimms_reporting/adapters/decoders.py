"""What reporting reads: `pimms.cases.v1`, `pimms.notifications.v1`, the recorded assessments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, get_args

from pimms_contracts.v1.common import Channel
from pimms_contracts.v1.lifecycle import (
    REFERRAL_EVENT_BY_STATUS,
    CaseOpened,
    ReferralEscalated,
    ReferralReminded,
)
from pimms_servicekit.messages import BadMessage, Incoming, parse_json
from pimms_servicekit.routing import Decoded, EventDecoder

CHANNELS = frozenset(get_args(Channel))


@dataclass(frozen=True)
class OpenedCase:
    """`case.opened`, with the channel the need came through when the event carries one."""

    event: CaseOpened
    channel: str | None


class CasesDecoder:
    """Lifecycle events the review counts; `case.opened` read with its optional `channel`.

    `pimms.cases.v1` may carry the need's channel on `case.opened` (an optional field added after
    v1): it is read when present, and the needs are counted as "channel not given" otherwise.
    """

    def __init__(self) -> None:
        self._events = EventDecoder(
            *REFERRAL_EVENT_BY_STATUS.values(), ReferralReminded, ReferralEscalated
        )
        self._opened = EventDecoder(CaseOpened)

    def __call__(self, incoming: Incoming) -> Decoded[Any] | None:
        """The event, or None for the types the review does not count."""
        if incoming.event_type != CaseOpened.ce_type:
            return self._events(incoming)
        data = parse_json(incoming.value)
        if not isinstance(data, dict):
            raise BadMessage("schema_invalid", "case.opened is not a JSON object")
        channel = data.get("channel")
        if "channel" not in CaseOpened.model_fields:
            data.pop("channel", None)
            incoming = _with_value(incoming, json.dumps(data).encode())
        decoded = self._opened(incoming)
        if decoded is None:  # pragma: no cover - the type was checked above
            return None
        known = channel if isinstance(channel, str) and channel in CHANNELS else None
        return Decoded(
            payload=OpenedCase(event=decoded.payload, channel=known),
            envelope=decoded.envelope,
            case_id=decoded.case_id,
            event_type=decoded.event_type,
        )


def _with_value(incoming: Incoming, value: bytes) -> Incoming:
    return Incoming(
        topic=incoming.topic,
        partition=incoming.partition,
        offset=incoming.offset,
        key=incoming.key,
        value=value,
        headers=incoming.headers,
        timestamp_ms=incoming.timestamp_ms,
    )
