"""Migration 0003 on SQLite and PostgreSQL: referrals already sent before it get their SLA
ladder's rows (they are chased like the others), and it downgrades cleanly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from pimms_referrals.adapters.tables import cases, referrals
from pimms_referrals.app import MIGRATIONS, build_runtime
from pimms_referrals.settings import ReferralsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.db import Database
from sqlalchemy import Connection, Table, column, insert
from sqlalchemy import table as sa_table
from sqlalchemy.sql.expression import TableClause

pytestmark = pytest.mark.integration

SENT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _to(revision: str, *, down: bool = False) -> Any:
    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


def _referral(referral_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "referral_id": referral_id,
        "case_id": case_id,
        "partner_id": referral_id.split("-", maxsplit=1)[0],
        "position": 0,
        "status": "transmitted",
        "outcome": None,
        "reason": None,
        "missing_documents": [],
        "ack_within_s": 48 * 3600,
        "resolve_within_s": 15 * 86400,
        "requested_at": SENT,
        "transmitted_at": SENT,
        "acknowledged_at": None,
        "ack_due_at": SENT + timedelta(hours=48),
        "resolve_due_at": SENT + timedelta(days=15),
        "updated_at": SENT,
        **fields,
    }


async def test_referrals_in_flight_get_their_ladder_and_the_migration_goes_back(
    database_url: str, tmp_path: Path
) -> None:
    database = Database(database_url)
    old_cases = [
        {
            "case_id": f"case-{n}",
            "case_reference": f"LYON8-2026-00000{n}",
            "site_id": "lyon-8",
            "mediator_id": "m-042",
            "category": "energy_bill",
            "urgency": "high",
            "departement": "69",
            "documents": [],
            "submitted_at": SENT,
            "opened_at": SENT,
        }
        for n in range(4)
    ]
    old_referrals = [
        _referral("edf-silent", "case-0"),
        _referral("edf-answered", "case-1", status="received", acknowledged_at=SENT),
        _referral("edf-done", "case-2", status="completed", outcome="resolved"),
        _referral(
            "edf-unsent",
            "case-3",
            status="requested",
            transmitted_at=None,
            ack_due_at=None,
            resolve_due_at=None,
        ),
    ]
    async with database.engine.begin() as connection:
        await connection.run_sync(_to("0002"))
        # the tables as 0002 had them: no correlation id, no ladder columns
        await connection.execute(insert(_as_of_0002(cases)), old_cases)
        await connection.execute(insert(_as_of_0002(referrals)), old_referrals)
    await database.dispose()

    settings = ReferralsSettings(data_dir=tmp_path, database_url=database_url)
    runtime = build_runtime(settings, clock=ManualClock(SENT + timedelta(hours=1)))
    await runtime.prepare_database()
    try:

        async def ladder() -> dict[str, list[tuple[str, datetime]]]:
            async with runtime.database.sessions() as session:
                repo = runtime.pipeline.repositories(session)
                return {
                    r["referral_id"]: [
                        (t.kind, t.due_at) for t in await repo.pending_timers(r["referral_id"])
                    ]
                    for r in old_referrals
                }

        assert await ladder() == {
            "edf-silent": [
                ("reminder", SENT + timedelta(hours=48)),
                ("escalation", SENT + timedelta(hours=96)),
                ("expiry", SENT + timedelta(days=15)),
            ],
            "edf-answered": [("expiry", SENT + timedelta(days=15))],
            "edf-done": [],
            "edf-unsent": [],
        }
        async with runtime.database.sessions() as session:
            stored = await runtime.pipeline.repositories(session).stored_referral("edf-silent")
        assert stored is not None
        assert (stored.reminders_sent, stored.escalated_at) == (0, None)
        async with runtime.database.engine.begin() as connection:
            await connection.run_sync(_to("0002", down=True))
            await connection.run_sync(_to("head"))
        assert await ladder() == {
            "edf-silent": [
                ("reminder", SENT + timedelta(hours=48)),
                ("escalation", SENT + timedelta(hours=96)),
                ("expiry", SENT + timedelta(days=15)),
            ],
            "edf-answered": [("expiry", SENT + timedelta(days=15))],
            "edf-done": [],
            "edf-unsent": [],
        }
    finally:
        await runtime.database.dispose()


def _as_of_0002(table: Table) -> TableClause:
    added_by_0003 = {"correlation_id", "reminders_sent", "escalated_at"}
    return sa_table(
        table.name, *(column(c.name, c.type) for c in table.columns if c.name not in added_by_0003)
    )
