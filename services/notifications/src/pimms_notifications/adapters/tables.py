"""Notifications' own tables. `contact_profiles` holds the personal data needed to reach people."""

from __future__ import annotations

from pimms_servicekit.tables import UTCDateTime
from sqlalchemy import Boolean, Column, Index, MetaData, String, Table

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
)
Index("ix_notifications_case", notifications.c.case_id)
