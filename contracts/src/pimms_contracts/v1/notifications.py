"""Notification outcomes on `pimms.notifications.v1`: no message body and no address."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime

from pimms_contracts.base import Event

Audience = Literal["visitor", "mediator"]
NotificationChannel = Literal["sms", "email", "mediator_inbox"]


class NotificationSent(Event):
    """A message went out to the visitor or the mediator."""

    ce_type: ClassVar[str] = "fr.pimms.notification.sent.v1"

    notification_id: UUID
    case_id: UUID
    referral_id: UUID | None
    audience: Audience
    channel: NotificationChannel
    template: str
    language: str
    sent_at: AwareDatetime


class NotificationFailed(Event):
    """A message could not go out. `channel` is null when the visitor has no reachable channel."""

    ce_type: ClassVar[str] = "fr.pimms.notification.failed.v1"

    notification_id: UUID
    case_id: UUID
    referral_id: UUID | None
    audience: Audience
    channel: NotificationChannel | None
    template: str
    language: str
    failed_at: AwareDatetime
    reason: str
