"""The partners' original records behind status reports, to dead-letter them when refused.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from pimms_servicekit.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partner_reports",
        sa.Column("report_id", sa.String(64), primary_key=True),
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("value", sa.LargeBinary, nullable=True),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("dead_lettered_at", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("partner_reports")
