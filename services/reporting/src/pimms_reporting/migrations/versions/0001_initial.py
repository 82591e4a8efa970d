"""Reporting: activity facts (no personal data) and the kit tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from pimms_servicekit.tables import (
    UTCDateTime,
    create_kit_effects,
    create_kit_tables,
    drop_kit_effects,
    drop_kit_tables,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(40), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(20), nullable=True),
        sa.Column("opened_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.String(40), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=True),
        sa.Column("held", sa.Boolean, nullable=False),
        sa.Column("held_at", UTCDateTime, nullable=True),
        sa.Column("released_at", UTCDateTime, nullable=True),
        sa.Column("transmitted_at", UTCDateTime, nullable=True),
        sa.Column("acknowledged_at", UTCDateTime, nullable=True),
        sa.Column("complement_requested", sa.Boolean, nullable=False),
        sa.Column("final_status", sa.String(20), nullable=True),
        sa.Column("final_at", UTCDateTime, nullable=True),
        sa.Column("final_code", sa.String(40), nullable=True),
    )
    op.create_table(
        "sla_signals",
        sa.Column("signal_id", sa.String(300), primary_key=True),
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.String(40), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("audience", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(20), nullable=True),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(60), nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "assessments",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.String(40), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("assessed_at", UTCDateTime, nullable=False),
    )
    create_kit_tables(op)
    create_kit_effects(op)


def downgrade() -> None:
    drop_kit_effects(op)
    drop_kit_tables(op)
    for table in ("assessments", "notifications", "sla_signals", "referrals", "cases"):
        op.drop_table(table)
