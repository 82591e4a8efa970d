"""Reading referrals' alerts: a refused report names the status report the gateway sent.

Refusals name the report (`report_id`); older ones are found through their causation id,
which is the `ce_id` of the gateway's PartnerStatusReported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pimms_contracts.v1.internal import PartnerReportRefused
from pimms_servicekit.messages import Incoming
from pimms_servicekit.routing import Decoded, EventDecoder


@dataclass(frozen=True, slots=True)
class ReportRefused:
    """Referrals could not apply a status report (`report_id`: None when it does not say which)."""

    event: PartnerReportRefused
    report_id: str | None


class RefusalsDecoder:
    """The referral alerts topic: only PartnerReportRefused concerns the gateway."""

    def __init__(self) -> None:
        self._events = EventDecoder(PartnerReportRefused)

    def __call__(self, incoming: Incoming) -> Decoded[Any] | None:
        """The refusal and the report it is about; other alerts are not the gateway's."""
        decoded = self._events(incoming)
        if decoded is None or not isinstance(decoded.payload, PartnerReportRefused):
            return None
        envelope = decoded.envelope
        return Decoded(
            payload=ReportRefused(
                event=decoded.payload,
                report_id=(
                    str(decoded.payload.report_id)
                    if decoded.payload.report_id is not None
                    else (envelope.causation_id if envelope is not None else None)
                ),
            ),
            envelope=envelope,
            case_id=decoded.case_id,
            event_type=decoded.event_type,
        )
