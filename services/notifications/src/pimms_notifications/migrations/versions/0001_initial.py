"""Notifications: contact profiles, notifications sent, and the kit tables.

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
        "contact_profiles",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("case_reference", sa.String(20), nullable=False),
        sa.Column("site_id", sa.String(40), nullable=False),
        sa.Column("mediator_id", sa.String(64), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("consent_sms", sa.Boolean, nullable=False),
        sa.Column("consent_email", sa.Boolean, nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("stored_at", UTCDateTime, nullable=False),
        sa.Column("unreachable_told_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("audience", sa.String(10), nullable=False),
        sa.Column("channel", sa.String(20), nullable=True),
        sa.Column("template", sa.String(60), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(60), nullable=True),
    )
    op.create_index("ix_notifications_case", "notifications", ["case_id"])
    create_kit_tables(op)


def downgrade() -> None:
    drop_kit_tables(op)
    op.drop_index("ix_notifications_case", "notifications")
    op.drop_table("notifications")
    op.drop_table("contact_profiles")
