"""Kit tables version 2: effects other than Kafka messages leave through an outbox too.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

from pimms_servicekit.tables import create_kit_effects, drop_kit_effects

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kit_effects(op)


def downgrade() -> None:
    drop_kit_effects(op)
