"""Reporting's own tables: activity facts, codes and times only (no name, contact or summary)."""

from __future__ import annotations

from pimms_servicekit.tables import UTCDateTime
from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("site_id", String(40), nullable=False),
    Column("category", String(40), nullable=False),
    Column("channel", String(20), nullable=True),
    Column("opened_at", UTCDateTime, nullable=False),
)

referrals = Table(
    "referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("partner_id", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("requested_at", UTCDateTime, nullable=True),
    Column("held", Boolean, nullable=False),
    Column("held_at", UTCDateTime, nullable=True),
    Column("released_at", UTCDateTime, nullable=True),
    Column("transmitted_at", UTCDateTime, nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("complement_requested", Boolean, nullable=False),
    Column("final_status", String(20), nullable=True),
    Column("final_at", UTCDateTime, nullable=True),
    Column("final_code", String(40), nullable=True),
)

sla_signals = Table(
    "sla_signals",
    metadata,
    Column("signal_id", String(300), primary_key=True),
    Column("referral_id", String(36), nullable=False),
    Column("case_id", String(36), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("partner_id", String(40), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("at", UTCDateTime, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("referral_id", String(36), nullable=True),
    Column("audience", String(20), nullable=False),
    Column("channel", String(20), nullable=True),
    Column("delivered", Boolean, nullable=False),
    Column("reason", String(60), nullable=True),
    Column("at", UTCDateTime, nullable=False),
)

assessments = Table(
    "assessments",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("partner_id", String(40), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("comment", Text, nullable=True),
    Column("assessed_at", UTCDateTime, nullable=False),
)

PROJECTION = (cases, referrals, sla_signals, notifications, assessments)
