"""Referrals: cases, referrals, referral events, and the kit tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from pimms_servicekit.tables import Id, UTCDateTime, create_kit_tables, drop_kit_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("case_reference", sa.String(20), nullable=False),
        sa.Column("site_id", sa.String(40), nullable=False),
        sa.Column("mediator_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("urgency", sa.String(10), nullable=False),
        sa.Column("departement", sa.String(3), nullable=False),
        sa.Column("documents", sa.JSON, nullable=False),
        sa.Column("submitted_at", UTCDateTime, nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("closed_at", UTCDateTime, nullable=True),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.Column("close_reason", sa.String(40), nullable=True),
    )
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.case_id"), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("missing_documents", sa.JSON, nullable=False),
        sa.Column("ack_within_s", sa.Integer, nullable=False),
        sa.Column("resolve_within_s", sa.Integer, nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("transmitted_at", UTCDateTime, nullable=True),
        sa.Column("acknowledged_at", UTCDateTime, nullable=True),
        sa.Column("ack_due_at", UTCDateTime, nullable=True),
        sa.Column("resolve_due_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("case_id", "partner_id", name="uq_referrals_case_partner"),
    )
    op.create_index("ix_referrals_status", "referrals", ["status"])
    op.create_table(
        "referral_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "referral_id",
            sa.String(36),
            sa.ForeignKey("referrals.referral_id"),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("detail", sa.String(200), nullable=True),
    )
    op.create_index(
        "ix_referral_events_referral", "referral_events", ["referral_id", "id"]
    )
    create_kit_tables(op)


def downgrade() -> None:
    drop_kit_tables(op)
    op.drop_table("referral_events")
    op.drop_table("referrals")
    op.drop_table("cases")
