"""The gateway's own tables. `dossiers` holds what partner formats need, personal data included;
`partner_reports` the partners' original records (free text included) behind each status report."""

from __future__ import annotations

from pimms_servicekit.tables import UTCDateTime
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

dossiers = Table(
    "dossiers",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("case_reference", String(20), nullable=False),
    Column("site_id", String(40), nullable=False),
    Column("mediator_id", String(64), nullable=False),
    # As the front office gave it, offset included: partners receive the request date unchanged.
    Column("submitted_at", String(64), nullable=False),
    Column("category", String(40), nullable=False),
    Column("urgency", String(10), nullable=False),
    Column("summary", Text, nullable=False),
    Column("documents", JSON, nullable=False),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("phone", String(20), nullable=True),
    Column("email", String(254), nullable=True),
    Column("consent_sms", Boolean, nullable=False),
    Column("consent_email", Boolean, nullable=False),
    Column("postal_code", String(5), nullable=False),
    Column("language", String(3), nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("partner_id", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("correlation_id", String(200), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("cancelled_at", UTCDateTime, nullable=True),
    Column("cancellation_sent_at", UTCDateTime, nullable=True),
    Column("cancellation_delivered_at", UTCDateTime, nullable=True),
    Column("failed_at", UTCDateTime, nullable=True),
    Column("failure_reason", String(40), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("reminders_sent", Integer, nullable=False, server_default="0"),
)
Index("ix_deliveries_case", deliveries.c.case_id)

# A status report's origin: the partner's record exactly as read, so that the gateway itself can
# dead-letter it to `<responses topic>.dlt` if referrals answers that the report cannot apply.
partner_reports = Table(
    "partner_reports",
    metadata,
    Column("report_id", String(64), primary_key=True),
    Column("referral_id", String(36), nullable=False),
    Column("partner_id", String(40), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),
    Column("headers", JSON, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("dead_lettered_at", UTCDateTime, nullable=True),
)

# What came in from a partner outside Kafka, once: a webhook body (`webhook:<sha256>`), a line of an
# inbound file (`file:<sha256 of the file>:<line>`). Recorded in the transaction that applies it,
# so a restart halfway through a file applies each line once and a body sent twice counts once.
partner_inputs = Table(
    "partner_inputs",
    metadata,
    Column("partner_id", String(40), primary_key=True),
    Column("input_key", String(120), primary_key=True),
    Column("outcome", String(30), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)
