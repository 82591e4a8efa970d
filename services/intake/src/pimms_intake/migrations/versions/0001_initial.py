"""Intake: cases, visitors, reference counters, rejections, and the kit tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from pimms_servicekit.tables import UTCDateTime, create_kit_tables, drop_kit_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("case_reference", sa.String(20), nullable=False, unique=True),
        sa.Column("submission_id", sa.String(36), nullable=False, unique=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(40), nullable=False),
        sa.Column("mediator_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("urgency", sa.String(10), nullable=False),
        sa.Column("documents", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("correlation_id", sa.String(200), nullable=False),
        sa.Column("submitted_at", UTCDateTime, nullable=False),
        sa.Column("accepted_at", UTCDateTime, nullable=False),
        sa.Column("withdrawn_at", UTCDateTime, nullable=True),
        sa.Column("withdrawal_reason", sa.String(40), nullable=True),
        sa.Column("closed_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "visitors",
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.case_id"), primary_key=True),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("postal_code", sa.String(5), nullable=False),
        sa.Column("preferred_language", sa.String(35), nullable=False),
        sa.Column("consent_sms", sa.Boolean, nullable=False),
        sa.Column("consent_email", sa.Boolean, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
    )
    op.create_table(
        "reference_counters",
        sa.Column("counter", sa.String(20), primary_key=True),
        sa.Column("last_value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rejections",
        sa.Column("message_id", sa.String(300), primary_key=True),
        sa.Column("submission_id", sa.String(100), nullable=False),
        sa.Column("codes", sa.String(500), nullable=False),
        sa.Column("rejected_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_rejections_submission", "rejections", ["submission_id"])
    create_kit_tables(op)


def downgrade() -> None:
    drop_kit_tables(op)
    op.drop_table("rejections")
    op.drop_table("reference_counters")
    op.drop_table("visitors")
    op.drop_table("cases")
