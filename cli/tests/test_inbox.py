"""`pimms inbox`: what a mediator reads of the notifications the platform sent them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pimms_cli.inbox import run_inbox

INBOX = Path("notifications") / "mediator_inbox"


def write(base: Path, site: str, mediator: str, notification_id: str, text: str) -> None:
    folder = base / INBOX / site / mediator
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{notification_id}.txt").write_text(text, encoding="utf-8")


def message(reference: str, subject: str, date: str, body: str) -> str:
    return f"To: m-042 (lyon-8)\nSubject: [{reference}] {subject}\nDate: {date}\n\n{body}\n"


def filled(base: Path) -> Path:
    write(
        base,
        "lyon-8",
        "m-042",
        "11111111-1111-5111-8111-111111111111",
        message(
            "LYON8-2026-000123",
            "Demande traitée par EDF",
            "2026-11-27T09:30:00+00:00",
            "Dossier LYON8-2026-000123 : EDF a traité la demande. Résultat : solution trouvée.",
        ),
    )
    write(
        base,
        "lyon-8",
        "m-042",
        "22222222-2222-5222-8222-222222222222",
        message(
            "LYON8-2026-000124",
            "Le visiteur ne peut pas être prévenu par la plateforme",
            "2026-11-27T14:05:00+00:00",
            "Dossier LYON8-2026-000124 : le visiteur n'a donné aucun moyen de contact.",
        ),
    )
    write(
        base,
        "lyon-8",
        "m-007",
        "33333333-3333-5333-8333-333333333333",
        message(
            "LYON8-2026-000125",
            "Pièces manquantes pour la Préfecture du Rhône",
            "2026-11-27T11:00:00+00:00",
            "Dossier LYON8-2026-000125 : avis d'imposition.",
        ),
    )
    return base


def test_a_mediators_inbox_is_newest_first_with_case_references(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_inbox("lyon-8", "m-042", base=filled(tmp_path), out=out) == 0
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 100 for line in lines)
    text = out.getvalue()
    newest, older = text.index("LYON8-2026-000124"), text.index("LYON8-2026-000123")
    assert newest < older
    assert "27/11 15:05" in text  # Paris time
    assert "Le visiteur ne peut pas être prévenu" in text
    assert "LYON8-2026-000125" not in text  # another mediator's


def test_without_a_mediator_every_mediator_of_the_site_is_listed(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_inbox("lyon-8", base=filled(tmp_path), out=out) == 0
    text = out.getvalue()
    assert "m-007" in text
    assert "m-042" in text
    assert text.index("000124") < text.index("000125") < text.index("000123")


def test_json_gives_one_object_per_notification_for_tools(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_inbox("lyon-8", "m-042", as_json_lines=True, base=filled(tmp_path), out=out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["case_reference"], r["mediator_id"]) for r in rows] == [
        ("LYON8-2026-000124", "m-042"),
        ("LYON8-2026-000123", "m-042"),
    ]
    assert rows[1]["subject"] == "Demande traitée par EDF"
    assert rows[1]["date"] == "2026-11-27T09:30:00+00:00"
    assert "solution trouvée" in rows[1]["body"]


def test_an_empty_inbox_says_so(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_inbox("lyon-8", "m-999", base=filled(tmp_path), out=out) == 1
    assert out.getvalue().strip() == "No notification for mediator m-999 of site lyon-8."


def test_the_command_reads_the_data_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PIMMS_DATA_DIR": str(filled(tmp_path))}
    done = subprocess.run(
        [sys.executable, "-m", "pimms_cli.main", "inbox", "lyon-8", "m-042", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["case_reference"] for line in done.stdout.splitlines()] == [
        "LYON8-2026-000124",
        "LYON8-2026-000123",
    ]


# -- from the notifications service's records (its mediator inbox need not be local files) ------


async def notified(base: Path, elsewhere: Path, database_url: str) -> dict[str, str]:
    """Run the notifications service (in memory broker, real database) through two cases of
    lyon-8: its mediator inbox delivers under `elsewhere`, not under the data directory `base`.
    Returns the case references by name."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from faststream.kafka import TestKafkaBroker
    from pimms_contracts import topics
    from pimms_contracts.envelope import Envelope
    from pimms_contracts.v1.frontoffice import ContactConsent
    from pimms_contracts.v1.internal import IntakeCaseOpened, SharedNeed, SharedVisitor
    from pimms_contracts.v1.lifecycle import CaseClosed, ReferralCompleted, ReferralDeliveryFailed
    from pimms_notifications.app import build_runtime, file_destinations, send_moments
    from pimms_notifications.settings import NotificationsSettings
    from pimms_servicekit.clock import ManualClock
    from pimms_servicekit.messages import encode, new_id

    at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    clock = ManualClock(at)
    settings = NotificationsSettings(data_dir=base, database_url=database_url)
    runtime = build_runtime(
        settings,
        clock=clock,
        destinations=file_destinations(NotificationsSettings(data_dir=elsewhere)),
    )
    runtime.subscribe()
    runtime.use_test_broker()
    await runtime.prepare_database()

    def opened(reference: str, mediator: str, *, sms: bool) -> IntakeCaseOpened:
        return IntakeCaseOpened(
            case_id=uuid.uuid4(),
            case_reference=reference,
            submission_id=uuid.uuid4(),
            site_id="lyon-8",
            mediator_id=mediator,
            channel="front_desk",
            submitted_at=at,
            opened_at=at,
            visitor=SharedVisitor(
                first_name="Marie",
                last_name="Dupont",
                phone="+33612345678" if sms else None,
                email=None,
                postal_code="69008",
                language="fr",
                contact_consent=ContactConsent(sms=sms, email=False),
            ),
            need=SharedNeed(
                category="energy_bill", summary="Facture", urgency="high", documents=()
            ),
        )

    async def publish(broker: object, topic: str, event: object) -> None:
        envelope = Envelope(id=new_id(), source="urn:pimms:test", type=event.ce_type, time=at)  # type: ignore[attr-defined]
        value, headers = encode(event, envelope=envelope)  # type: ignore[arg-type]
        await broker.publish(  # type: ignore[attr-defined]
            value,
            topic,
            key=str(event.case_id).encode(),  # type: ignore[attr-defined]
            headers={k: v.decode() for k, v in headers},
        )

    async def settle() -> None:
        clock.advance(timedelta(seconds=3))
        await send_moments(runtime)
        while await runtime.drain_effects():
            pass

    silent = opened("LYON8-2026-000301", "m-042", sms=False)
    done = opened("LYON8-2026-000302", "m-042", sms=True)
    other = opened("LYON8-2026-000303", "m-007", sms=True)
    try:
        async with TestKafkaBroker(runtime.broker) as broker:
            for case in (silent, done, other):
                await publish(broker, topics.INTAKE_CASES, case)
            # The silent visitor's case: its partner cannot be reached, in the same moment.
            referral = {
                "case_id": silent.case_id,
                "case_reference": silent.case_reference,
                "site_id": "lyon-8",
                "occurred_at": at,
                "referral_id": uuid.uuid4(),
                "partner_id": "edf",
            }
            failed = ReferralDeliveryFailed(**referral, reason="partner_unreachable")
            await publish(broker, topics.CASES, failed)
            await settle()
            clock.advance(timedelta(hours=1))
            ended = {**referral, "case_id": done.case_id, "case_reference": done.case_reference}
            await publish(broker, topics.CASES, ReferralCompleted(**ended, outcome="resolved"))
            closed = {k: v for k, v in ended.items() if k not in ("referral_id", "partner_id")}
            await publish(broker, topics.CASES, CaseClosed(**closed, outcome="resolved"))
            await settle()
            clock.advance(timedelta(hours=1))
            await publish(
                broker,
                topics.CASES,
                ReferralDeliveryFailed(
                    **{
                        **referral,
                        "case_id": other.case_id,
                        "case_reference": other.case_reference,
                    },
                    reason="partner_unreachable",
                ),
            )
            await settle()
    finally:
        await runtime.database.dispose()
    return {
        "silent": silent.case_reference,
        "done": done.case_reference,
        "other": other.case_reference,
    }


async def test_the_records_list_a_mediators_messages_newest_first_without_local_files(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, elsewhere = tmp_path / "data", tmp_path / "inbox-host"
    refs = await notified(base, elsewhere, database_url)
    monkeypatch.setenv("PIMMS_NOTIFICATIONS_DATABASE_URL", database_url)
    rows = [
        json.loads(line) for line in await asyncio.to_thread(_json_lines, "lyon-8", "m-042", base)
    ]
    assert [(r["case_reference"], r["source"], r["status"]) for r in rows] == [
        (refs["done"], "records", "sent"),
        (refs["silent"], "records", "sent"),
    ]
    done, silent = rows
    assert done["templates"] == ["referral_completed", "case_closed"]
    assert done["subject"] == "Demande traitée par EDF ; Dossier clos"
    assert "Résultat : solution trouvée." in done["body"]
    assert silent["templates"] == ["referral_delivery_failed", "visitor_unreachable"]
    assert "ne peut pas être prévenu" in silent["body"]
    assert done["date"] > silent["date"]
    # No personal data from the contact profiles.
    assert "Marie" not in json.dumps(rows)
    assert "+336" not in json.dumps(rows)
    # Every mediator of the site, as a table.
    out = io.StringIO()
    assert await asyncio.to_thread(run_inbox, "lyon-8", base=base, out=out) == 0
    text = out.getvalue()
    assert text.index(refs["other"]) < text.index(refs["done"]) < text.index(refs["silent"])
    assert "m-007" in text
    assert "Status" in text


async def test_once_the_message_is_no_longer_kept_the_records_say_what_it_said(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pimms_servicekit.tables import effects
    from sqlalchemy.ext.asyncio import create_async_engine

    base = tmp_path / "data"
    refs = await notified(base, tmp_path / "inbox-host", database_url)
    engine = create_async_engine(database_url)
    async with engine.begin() as connection:  # housekeeping purged the delivered effects
        await connection.execute(effects.delete())
    await engine.dispose()
    monkeypatch.setenv("PIMMS_NOTIFICATIONS_DATABASE_URL", database_url)
    [row] = [
        json.loads(line) for line in await asyncio.to_thread(_json_lines, "lyon-8", "m-007", base)
    ]
    assert row["case_reference"] == refs["other"]
    assert row["subject"] == "referral_delivery_failed"
    assert row["body"] == ""


def _json_lines(site: str, mediator: str, base: Path) -> list[str]:
    out = io.StringIO()
    assert run_inbox(site, mediator, as_json_lines=True, base=base, out=out) == 0
    return out.getvalue().splitlines()


def test_the_files_say_they_are_files(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_inbox("lyon-8", "m-042", as_json_lines=True, base=filled(tmp_path), out=out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {(r["source"], r["status"]) for r in rows} == {("files", "sent")}


def test_without_files_nor_records_the_inbox_is_empty(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_inbox("lyon-8", "m-042", base=tmp_path, out=out) == 1


def test_records_that_cannot_be_read_say_so_without_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notifications.db").write_bytes(b"")  # not the service's database
    assert run_inbox("lyon-8", "m-042", base=tmp_path, out=io.StringIO()) == 2
    error = capsys.readouterr().err
    assert "cannot read the notifications service's records (OperationalError)" in error
    assert str(tmp_path) not in error
