"""Partner inputs outside Kafka (webhook bodies, inbound file lines) and reminders sent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from pimms_servicekit.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(
            sa.Column("reminders_sent", sa.Integer, nullable=False, server_default="0")
        )
    op.create_table(
        "partner_inputs",
        sa.Column("partner_id", sa.String(40), primary_key=True),
        sa.Column("input_key", sa.String(120), primary_key=True),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("partner_inputs")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("reminders_sent")
