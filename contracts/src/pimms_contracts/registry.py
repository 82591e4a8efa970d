"""Every event type the platform knows, by its CloudEvents `type`."""

from __future__ import annotations

from pimms_contracts.base import Event
from pimms_contracts.v1 import assessments, frontoffice, internal, lifecycle, notifications

ALL_EVENTS: tuple[type[Event], ...] = (
    frontoffice.NeedSubmitted,
    frontoffice.NeedDocumentsAdded,
    frontoffice.NeedWithdrawn,
    frontoffice.ReferralAssessed,
    frontoffice.NeedAccepted,
    frontoffice.NeedAcknowledged,
    frontoffice.NeedRejected,
    *lifecycle.LIFECYCLE_EVENTS,
    notifications.NotificationSent,
    notifications.NotificationFailed,
    internal.IntakeCaseOpened,
    internal.IntakeDocumentsAdded,
    internal.IntakeCaseWithdrawn,
    internal.PartnerDelivered,
    internal.PartnerDeliveryFailed,
    internal.PartnerStatusReported,
    internal.PartnerReportRefused,
    assessments.AssessmentRecorded,
)

EVENTS_BY_TYPE: dict[str, type[Event]] = {event.ce_type: event for event in ALL_EVENTS}

if len(EVENTS_BY_TYPE) != len(ALL_EVENTS):  # pragma: no cover - a programming error
    raise RuntimeError("two event classes share one ce_type")
