"""`pimms inbox`: what a mediator reads of the notifications the platform sent them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

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
