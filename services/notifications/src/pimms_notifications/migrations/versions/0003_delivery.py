"""Real delivery: provider receipts, one message per moment, visitor reminders.

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
    with op.batch_alter_table("notifications") as table:
        table.add_column(sa.Column("receipt", sa.String(100), nullable=True))
        table.add_column(sa.Column("moment_id", sa.String(36), nullable=True))
        table.add_column(sa.Column("tried", sa.String(40), nullable=True))
    op.create_index("ix_notifications_receipt", "notifications", ["receipt"])
    op.create_table(
        "moment_notices",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("audience", sa.String(10), nullable=False),
        sa.Column("template", sa.String(60), nullable=False),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("facts", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("causation_id", sa.String(64), nullable=True),
        sa.Column("moment_id", sa.String(36), nullable=True),
    )
    op.create_index("ix_moment_notices_waiting", "moment_notices", ["moment_id", "at"])
    op.create_index("ix_moment_notices_moment", "moment_notices", ["moment_id"])
    op.create_table(
        "visitor_holds",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("documents", sa.Text, nullable=False),
        sa.Column("since", UTCDateTime, nullable=False),
        sa.Column("reminders_sent", sa.Integer, nullable=False),
        sa.Column("last_reminded_at", UTCDateTime, nullable=True),
        sa.Column("ended", sa.Boolean, nullable=False),
    )
    op.create_index("ix_visitor_holds_case", "visitor_holds", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_visitor_holds_case", "visitor_holds")
    op.drop_table("visitor_holds")
    op.drop_index("ix_moment_notices_moment", "moment_notices")
    op.drop_index("ix_moment_notices_waiting", "moment_notices")
    op.drop_table("moment_notices")
    op.drop_index("ix_notifications_receipt", "notifications")
    with op.batch_alter_table("notifications") as table:
        table.drop_column("tried")
        table.drop_column("moment_id")
        table.drop_column("receipt")
