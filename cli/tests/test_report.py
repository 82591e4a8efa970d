"""`pimms report` as a user runs it: rebuilt from the topics, then read from its database."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pimms_cli.report import ReportOptions, report_command
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.v1 import lifecycle as lc
from pimms_contracts.v1.assessments import AssessmentRecorded
from pimms_contracts.v1.notifications import NotificationSent
from pimms_servicekit.testing import KafkaEndpoint, event_message, produce

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def pimms(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pimms_cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def a_small_year() -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
    """Seven EDF referrals from lyon-8 (six resolved in March, one still running), one La Poste
    referral rejected, an SMS per resolution, and one assessment with a comment."""
    messages = []

    def send(event: Event, case_id: str, topic: str = topics.CASES) -> None:
        messages.append(event_message(topic, event, key=case_id, source="urn:pimms:test"))

    for number in range(8):
        case_id = uuid.uuid4()
        referral_id = uuid.uuid4()
        partner, category = ("edf", "energy_bill") if number < 7 else ("la-poste", "postal_service")
        opened = START + timedelta(days=number)
        about = {
            "case_id": case_id,
            "case_reference": f"LYON8-2026-{number + 1:06d}",
            "site_id": "lyon-8",
            "occurred_at": opened,
        }
        send(lc.CaseOpened(**about, category=category, urgency="normal"), str(case_id))
        referral = {**about, "referral_id": referral_id, "partner_id": partner}

        def at(
            hours: int, fields: dict[str, Any] = referral, opened: datetime = opened
        ) -> dict[str, Any]:
            return {**fields, "occurred_at": opened + timedelta(hours=hours)}

        send(lc.ReferralRequested(**at(0)), str(case_id))
        send(lc.ReferralTransmitted(**at(1)), str(case_id))
        send(lc.ReferralReceived(**at(1 + 2 * (number + 1))), str(case_id))
        if number == 6:
            continue  # still running
        if partner == "la-poste":
            send(lc.ReferralRejected(**at(30), reason="out_of_scope"), str(case_id))
            continue
        send(lc.ReferralCompleted(**at(48), outcome="resolved"), str(case_id))
        sms = NotificationSent(
            notification_id=uuid.uuid4(),
            case_id=case_id,
            referral_id=referral_id,
            audience="visitor",
            channel="sms",
            template="referral_completed",
            language="fr",
            sent_at=opened + timedelta(hours=48, seconds=2),
        )
        send(sms, str(case_id), topics.NOTIFICATIONS)
        if number == 0:
            assessed = AssessmentRecorded(
                case_id=case_id,
                case_reference=about["case_reference"],
                site_id="lyon-8",
                referral_id=referral_id,
                partner_id="edf",
                rating=5,
                tags=("fast", "clear_answer"),
                comment="Réponse rapide et claire.",
                assessed_at=opened + timedelta(days=3),
                recorded_at=opened + timedelta(days=3),
            )
            send(assessed, str(case_id), topics.INTAKE_ASSESSMENTS)
    return messages


@pytest.mark.integration
async def test_report_rebuilt_from_the_topics_then_read_in_each_format(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    await produce(kafka.bootstrap_servers, a_small_year())
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "PIMMS_DATA_DIR": str(tmp_path),
    }
    env.pop("PIMMS_REPORTING_DATABASE_URL", None)
    out = tmp_path / "out"
    rebuilt = pimms(
        "report", "--year", "2026", "--rebuild", "--format", "json", "--out", str(out), env=env
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert rebuilt.stdout.splitlines() == [str((out / "revue-2026.json").resolve())]
    assert (tmp_path / "reporting.db").exists()  # $PIMMS_DATA_DIR/reporting.db
    review = json.loads((out / "revue-2026.json").read_text(encoding="utf-8"))
    rows = {(r["site"], r["partner"], r["period"]): r["values"] for r in review["rows"]}
    edf_year = rows[("lyon-8", "edf", "year")]
    assert (edf_year["needs"], edf_year["referrals"], edf_year["outcome.resolved"]) == (7, 7, 6)
    assert edf_year["ack.count"] == 7
    assert edf_year["ack.median_h"] == 8.0  # 2, 4, ... 14 hours after transmission
    assert edf_year["resolve.median_h"] == 47.0
    assert edf_year["notifications.sent.sms"] == 6
    assert rows[("lyon-8", "la-poste", "03")]["outcome.rejected.out_of_scope"] == 1
    assert rows[("*", "*", "year")]["needs"] == 8
    assert [c["comment"] for c in review["comments"]] == ["Réponse rapide et claire."]

    # Without --rebuild: read from the reporting database; by default into $PIMMS_DATA_DIR/reports.
    as_csv = pimms("report", "--year", "2026", "--format", "csv", env=env)
    assert as_csv.returncode == 0, as_csv.stderr[-2000:]
    reports = tmp_path / "reports"
    assert sorted(Path(p).name for p in as_csv.stdout.split()) == [
        "revue-2026-commentaires.csv",
        "revue-2026.csv",
    ]
    raw = (reports / "revue-2026.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    header = table[0]
    edf = next(line for line in table if line[:3] == ["lyon-8", "EDF", "Année 2026"])
    assert edf[header.index("Besoins")] == "7"
    assert edf[header.index("Note moyenne (sur 5)")] == "5,00"
    assert edf[header.index("Délai de traitement, médiane (h)")] == "47,0"

    # For EDF only: its figures, small counts hidden, no comment.
    for_edf = pimms("report", "--year", "2026", "--partner", "edf", "--out", str(out), env=env)
    assert for_edf.returncode == 0, for_edf.stderr[-2000:]
    page = (out / "revue-2026-edf.html").read_text(encoding="utf-8")
    assert page.startswith('<!DOCTYPE html>\n<html lang="fr">')
    assert "La Poste" not in page
    assert "Réponse rapide" not in page
    assert "&lt; 5" in page  # one assessment, one rating: shown as "< 5"
    as_json = pimms(
        "report",
        "--year",
        "2026",
        "--partner",
        "edf",
        "--format",
        "json",
        "--out",
        str(out),
        env=env,
    )
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    partner_view = json.loads((out / "revue-2026-edf.json").read_text(encoding="utf-8"))
    values = {(r["site"], r["period"]): r["values"] for r in partner_view["rows"]}
    assert values[("lyon-8", "year")]["needs"] == 7
    assert values[("lyon-8", "year")]["assessments.mean_rating"] == "< 5"
    assert values[("lyon-8", "03")]["outcome.not_resolved"] == "< 5"
    assert partner_view["comments"] == []

    # PIMMS_REPORTING_DATABASE_URL names another database: that one is read (empty here).
    other = {**env, "PIMMS_REPORTING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'o.db'}"}
    empty = pimms("report", "--year", "2026", "--format", "json", "--out", str(tmp_path), env=other)
    assert empty.returncode == 0, empty.stderr[-2000:]
    assert json.loads((tmp_path / "revue-2026.json").read_text())["rows"] == []


def test_report_options_become_the_reporting_command() -> None:
    options = ReportOptions(
        year=2026, site="lyon-8", partner="edf", format="csv", out=Path("/tmp/r"), rebuild=True
    )
    assert report_command(options, python="python3") == [
        "python3",
        "-m",
        "pimms_reporting",
        "report",
        "--year",
        "2026",
        "--format",
        "csv",
        "--site",
        "lyon-8",
        "--partner",
        "edf",
        "--out",
        "/tmp/r",
        "--rebuild",
    ]


def test_rebuild_without_a_broker_says_so(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "PIMMS_DATA_DIR": str(tmp_path),
    }
    result = pimms("report", "--year", "2026", "--rebuild", env=env)
    assert result.returncode == 1
    assert f"no Kafka broker answers at 127.0.0.1:{port}" in result.stderr
