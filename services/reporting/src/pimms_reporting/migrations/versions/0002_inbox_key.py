"""Kit tables version 3: the inbox's primary key leads with the message id.

A batch's duplicate check names the consumer and lists message ids; keyed (consumer, message_id),
PostgreSQL without statistics compared every row of the consumer with the list.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

from pimms_servicekit.tables import key_kit_inbox_by_consumer, key_kit_inbox_by_message

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key_kit_inbox_by_message(op)


def downgrade() -> None:
    key_kit_inbox_by_consumer(op)
