"""Notifications' own tables. `contact_profiles` holds the personal data needed to reach people."""

from __future__ import annotations

from pimms_servicekit.tables import UTCDateTime
from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

contact_profiles = Table(
    "contact_profiles",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_reference", String(20), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("mediator_id", String(64), nullable=False),
    Column("first_name", String(100), nullable=False),
    Column("phone", String(20), nullable=True),
    Column("email", String(254), nullable=True),
    Column("consent_sms", Boolean, nullable=False),
    Column("consent_email", Boolean, nullable=False),
    Column("language", String(8), nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
    Column("unreachable_told_at", UTCDateTime, nullable=True),
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("referral_id", String(36), nullable=True),
    Column("audience", String(10), nullable=False),
    Column("channel", String(20), nullable=True),
    Column("template", String(60), nullable=False),
    Column("language", String(8), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status", String(10), nullable=False),
    Column("reason", String(60), nullable=True),
    Column("receipt", String(100), nullable=True),  # the provider's id (SMS delivery reports)
    Column("moment_id", String(36), nullable=True),  # its notices are in moment_notices
    Column("tried", String(40), nullable=True),  # channels that failed before this one: "sms"
)
Index("ix_notifications_case", notifications.c.case_id)
Index("ix_notifications_receipt", notifications.c.receipt)

# Notices waiting for the end of their moment (one message per moment): `moment_id` is null while
# the notice waits, then the notification id of the message that said it.
moment_notices = Table(
    "moment_notices",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("audience", String(10), nullable=False),
    Column("template", String(60), nullable=False),
    Column("referral_id", String(36), nullable=True),
    Column("facts", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("correlation_id", String(64), nullable=True),
    Column("causation_id", String(64), nullable=True),  # the message that caused the notice
    Column("moment_id", String(36), nullable=True),
)
Index("ix_moment_notices_waiting", moment_notices.c.moment_id, moment_notices.c.at)
Index("ix_moment_notices_moment", moment_notices.c.moment_id)

# Referrals waiting for documents from their visitor, and the reminders sent so far.
visitor_holds = Table(
    "visitor_holds",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("partner_id", String(40), nullable=False),
    Column("documents", Text, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("reminders_sent", Integer, nullable=False),
    Column("last_reminded_at", UTCDateTime, nullable=True),
    Column("ended", Boolean, nullable=False),
)
Index("ix_visitor_holds_case", visitor_holds.c.case_id)
