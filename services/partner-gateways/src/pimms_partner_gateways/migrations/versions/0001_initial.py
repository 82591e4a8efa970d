"""Partner-gateways: dossiers, deliveries, and the kit tables.

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
        "dossiers",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("case_reference", sa.String(20), nullable=False),
        sa.Column("site_id", sa.String(40), nullable=False),
        sa.Column("mediator_id", sa.String(64), nullable=False),
        sa.Column("submitted_at", sa.String(64), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("urgency", sa.String(10), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("documents", sa.JSON, nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("consent_sms", sa.Boolean, nullable=False),
        sa.Column("consent_email", sa.Boolean, nullable=False),
        sa.Column("postal_code", sa.String(5), nullable=False),
        sa.Column("language", sa.String(3), nullable=False),
        sa.Column("stored_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("correlation_id", sa.String(200), nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
        sa.Column("cancelled_at", UTCDateTime, nullable=True),
        sa.Column("cancellation_sent_at", UTCDateTime, nullable=True),
        sa.Column("cancellation_delivered_at", UTCDateTime, nullable=True),
        sa.Column("failed_at", UTCDateTime, nullable=True),
        sa.Column("failure_reason", sa.String(40), nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_deliveries_case", "deliveries", ["case_id"])
    create_kit_tables(op)


def downgrade() -> None:
    drop_kit_tables(op)
    op.drop_index("ix_deliveries_case", "deliveries")
    op.drop_table("deliveries")
    op.drop_table("dossiers")
