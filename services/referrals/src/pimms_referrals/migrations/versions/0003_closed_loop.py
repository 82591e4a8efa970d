"""The closed loop: SLA timers, the ladder's progress, and who moved a referral from where.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

from pimms_servicekit.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("correlation_id", sa.String(200), nullable=True))
    op.add_column(
        "referrals",
        sa.Column("reminders_sent", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column("referrals", sa.Column("escalated_at", UTCDateTime, nullable=True))
    op.add_column("referral_events", sa.Column("from_stage", sa.String(20), nullable=True))
    op.add_column("referral_events", sa.Column("to_stage", sa.String(20), nullable=True))
    op.add_column("referral_events", sa.Column("source_event", sa.String(200), nullable=True))
    op.create_table(
        "timers",
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column(
            "referral_id",
            sa.String(36),
            sa.ForeignKey("referrals.referral_id"),
            primary_key=True,
        ),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_timers_due", "timers", ["due_at"])
    _ladder_of_referrals_in_flight()


_FINAL = ("completed", "rejected", "expired", "cancelled", "delivery_failed")


def _ladder_of_referrals_in_flight() -> None:
    """Referrals transmitted before this version get the rows of the ladder steps still ahead."""
    referrals = sa.table(
        "referrals",
        sa.column("referral_id", sa.String),
        sa.column("case_id", sa.String),
        sa.column("status", sa.String),
        sa.column("ack_within_s", sa.Integer),
        sa.column("transmitted_at", UTCDateTime),
        sa.column("acknowledged_at", UTCDateTime),
        sa.column("ack_due_at", UTCDateTime),
        sa.column("resolve_due_at", UTCDateTime),
    )
    timers = sa.table(
        "timers",
        sa.column("kind", sa.String),
        sa.column("referral_id", sa.String),
        sa.column("case_id", sa.String),
        sa.column("due_at", UTCDateTime),
    )
    found = op.get_bind().execute(
        sa.select(referrals).where(
            referrals.c.transmitted_at.is_not(None), referrals.c.status.not_in(_FINAL)
        )
    )
    rows: list[dict[str, object]] = []
    for r in found:
        ack_within = timedelta(seconds=r.ack_within_s)
        steps = [("expiry", r.resolve_due_at)]
        if r.acknowledged_at is None:
            steps.append(("reminder", r.ack_due_at or r.transmitted_at + ack_within))
            steps.append(("escalation", r.transmitted_at + 2 * ack_within))
        rows.extend(
            {"kind": kind, "referral_id": r.referral_id, "case_id": r.case_id, "due_at": due}
            for kind, due in steps
            if due is not None
        )
    if rows:
        op.bulk_insert(timers, rows)


def downgrade() -> None:
    op.drop_index("ix_timers_due", table_name="timers")
    op.drop_table("timers")
    # Plain DROP COLUMN (SQLite has it since 3.35): a batch copy of `cases` would break the
    # foreign keys that point at it.
    for table, name in (
        ("referral_events", "source_event"),
        ("referral_events", "to_stage"),
        ("referral_events", "from_stage"),
        ("referrals", "escalated_at"),
        ("referrals", "reminders_sent"),
        ("cases", "correlation_id"),
    ):
        op.drop_column(table, name)
