"""Intake's own tables. The visitor table is the platform's only full copy of personal data."""

from __future__ import annotations

from pimms_servicekit.tables import UTCDateTime
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_reference", String(20), nullable=False, unique=True),
    Column("submission_id", String(36), nullable=False, unique=True),
    Column("fingerprint", String(64), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("mediator_id", String(64), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("category", String(40), nullable=False),
    Column("urgency", String(10), nullable=False),
    Column("documents", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("correlation_id", String(200), nullable=False),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("accepted_at", UTCDateTime, nullable=False),
    Column("withdrawn_at", UTCDateTime, nullable=True),
    Column("withdrawal_reason", String(40), nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
)

visitors = Table(
    "visitors",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("phone", String(20), nullable=True),
    Column("email", String(254), nullable=True),
    Column("postal_code", String(5), nullable=False),
    Column("preferred_language", String(35), nullable=False),
    Column("consent_sms", Boolean, nullable=False),
    Column("consent_email", Boolean, nullable=False),
    Column("summary", Text, nullable=False),
)

reference_counters = Table(
    "reference_counters",
    metadata,
    Column("counter", String(20), primary_key=True),
    Column("last_value", BigInteger, nullable=False),
)

rejections = Table(
    "rejections",
    metadata,
    Column("message_id", String(300), primary_key=True),
    Column("submission_id", String(100), nullable=False),
    Column("codes", String(500), nullable=False),
    Column("rejected_at", UTCDateTime, nullable=False),
)

# Each referral of a case as `pimms.cases.v1` last told it: what an assessment is checked against.
referral_statuses = Table(
    "referral_statuses",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False, index=True),
    Column("site_id", String(40), nullable=False),
    Column("partner_id", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The mediators' assessments, one per referral (a later one replaces it), comment scrubbed.
assessments = Table(
    "assessments",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("submission_id", String(36), nullable=False),
    Column("mediator_id", String(64), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("comment", Text, nullable=True),
    Column("assessed_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)
