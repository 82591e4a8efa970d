"""`pimms inbox <site> [<mediator>] [--json]`: a mediator's notifications, newest first.

The embedded mediator inbox of the notifications service is a folder per mediator,
`$PIMMS_DATA_DIR/notifications/mediator_inbox/<site>/<mediator>/<notification id>.txt`, each file
a few header lines (`To:`, `Subject: [<case reference>] ...`, `Date:`), a blank line and the text.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from pimms_cli.config import data_dir
from pimms_cli.terminal import console, table

PARIS = ZoneInfo("Europe/Paris")
_REFERENCE = re.compile(r"^\[([^\]]+)\]\s*")


@dataclass(frozen=True)
class InboxEntry:
    """One notification in a mediator's inbox."""

    notification_id: str
    site_id: str
    mediator_id: str
    date: datetime | None
    case_reference: str | None
    subject: str
    body: str


def inbox_root(base: Path | None = None) -> Path:
    """Where the embedded mediator inbox keeps its files."""
    return (base or data_dir()) / "notifications" / "mediator_inbox"


def folder_name(value: str) -> str:
    """A site or mediator id as the inbox names its folder (as the notifications service does)."""
    quoted = quote(value, safe="-_@+")
    return "%2E" + quoted[1:] if quoted.startswith(".") else quoted


def parse_entry(text: str, *, notification_id: str, site_id: str, mediator_id: str) -> InboxEntry:
    """One inbox file: its headers and its text."""
    head, _, body = text.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.splitlines():
        name, separator, value = line.partition(":")
        if separator:
            headers[name.strip().lower()] = value.strip()
    subject = headers.get("subject", "")
    match = _REFERENCE.match(subject)
    reference = match.group(1) if match else None
    try:
        date = datetime.fromisoformat(headers["date"]) if headers.get("date") else None
    except ValueError:
        date = None
    return InboxEntry(
        notification_id=notification_id,
        site_id=site_id,
        mediator_id=mediator_id,
        date=date,
        case_reference=reference,
        subject=_REFERENCE.sub("", subject),
        body=body.strip(),
    )


def read_inbox(root: Path, *, site: str, mediator: str | None = None) -> list[InboxEntry]:
    """Every notification of the site's mediators (or one mediator's), newest first."""
    site_folder = root / folder_name(site)
    if not site_folder.is_dir():
        return []
    folders = (
        [site_folder / folder_name(mediator)]
        if mediator is not None
        else sorted(p for p in site_folder.iterdir() if p.is_dir())
    )
    entries: list[InboxEntry] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob("*.txt"):
            if path.name.startswith("."):
                continue  # a file being written
            try:
                text = path.read_text(encoding="utf-8")
            except (FileNotFoundError, UnicodeDecodeError):
                continue
            entries.append(
                parse_entry(
                    text,
                    notification_id=path.stem,
                    site_id=site,
                    mediator_id=unquote(folder.name),
                )
            )
    oldest = datetime.min.replace(tzinfo=PARIS)
    return sorted(entries, key=lambda e: (e.date or oldest, e.notification_id), reverse=True)


def as_json(entry: InboxEntry) -> str:
    """One entry as one JSON line."""
    data = asdict(entry)
    data["date"] = entry.date.isoformat() if entry.date else None
    return json.dumps(data, ensure_ascii=False)


def inbox_table(entries: list[InboxEntry], *, with_mediator: bool) -> object:
    """The entries as a table (dates in Paris time)."""
    headers = ["Date (Paris)", "Case", "Subject"]
    if with_mediator:
        headers.insert(1, "Mediator")
    view = table(*headers)
    for entry in entries:
        when = entry.date.astimezone(PARIS).strftime("%d/%m %H:%M") if entry.date else "-"
        row = [when, entry.case_reference or "-", entry.subject]
        if with_mediator:
            row.insert(1, entry.mediator_id)
        view.add_row(*row)
    return view


def run_inbox(
    site: str,
    mediator: str | None = None,
    *,
    as_json_lines: bool = False,
    base: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the inbox; 0, or 1 when it is empty."""
    target = out or sys.stdout
    entries = read_inbox(inbox_root(base), site=site, mediator=mediator)
    if as_json_lines:
        for entry in entries:
            target.write(as_json(entry) + "\n")
        return 0 if entries else 1
    screen = console(file=target)
    if not entries:
        who = f"mediator {mediator} of site {site}" if mediator else f"site {site}"
        screen.print(f"No notification for {who}.")
        return 1
    screen.print(inbox_table(entries, with_mediator=mediator is None))
    return 0
