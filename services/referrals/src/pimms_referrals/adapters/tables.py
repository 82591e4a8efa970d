"""Referrals' own tables: cases (no personal data), referrals, their history and SLA timers."""

from __future__ import annotations

from pimms_servicekit.tables import Id, UTCDateTime
from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_reference", String(20), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("mediator_id", String(64), nullable=False),
    Column("category", String(40), nullable=False),
    Column("urgency", String(10), nullable=False),
    Column("departement", String(3), nullable=False),
    Column("documents", JSON, nullable=False),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("outcome", String(40), nullable=True),
    Column("close_reason", String(40), nullable=True),
    # The case journey's correlation id: what timers emit later carries it too.
    Column("correlation_id", String(200), nullable=True),
)

referrals = Table(
    "referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), ForeignKey("cases.case_id"), nullable=False),
    Column("partner_id", String(40), nullable=False),
    Column("position", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("outcome", String(40), nullable=True),
    Column("reason", String(200), nullable=True),
    Column("missing_documents", JSON, nullable=False),
    Column("ack_within_s", Integer, nullable=False),
    Column("resolve_within_s", Integer, nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("transmitted_at", UTCDateTime, nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("ack_due_at", UTCDateTime, nullable=True),
    Column("resolve_due_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("reminders_sent", Integer, nullable=False, server_default="0"),
    Column("escalated_at", UTCDateTime, nullable=True),
    UniqueConstraint("case_id", "partner_id", name="uq_referrals_case_partner"),
)
Index("ix_referrals_status", referrals.c.status)

referral_events = Table(
    "referral_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("referral_id", String(36), ForeignKey("referrals.referral_id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    # The actor that moved it (domain/lifecycle.py `Actor`).
    Column("source", String(20), nullable=False),
    Column("detail", String(200), nullable=True),
    Column("from_stage", String(20), nullable=True),
    Column("to_stage", String(20), nullable=True),
    # The ce_id of the event that caused it, or the key of the timer that fired.
    Column("source_event", String(200), nullable=True),
)
Index("ix_referral_events_referral", referral_events.c.referral_id, referral_events.c.id)

# The SLA ladder's pending steps (domain/sla.py `due_timers`), kept equal to it after every save.
timers = Table(
    "timers",
    metadata,
    Column("kind", String(20), primary_key=True),
    Column("referral_id", String(36), ForeignKey("referrals.referral_id"), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
)
Index("ix_timers_due", timers.c.due_at)
