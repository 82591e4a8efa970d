"""`pimms inbox <site> [<mediator>] [--json]`: a mediator's notifications, newest first.

Two sources, the same entries:

- `files`: the embedded mediator inbox of the notifications service (`pimms dev`), a folder per
  mediator, `$PIMMS_DATA_DIR/notifications/mediator_inbox/<site>/<mediator>/<notification id>.txt`,
  each file a few header lines (`To:`, `Subject: [<case reference>] ...`, `Date:`), a blank line
  and the text.
- `records`: what the notifications service recorded in its database
  (`PIMMS_NOTIFICATIONS_DATABASE_URL`, else `$PIMMS_DATA_DIR/notifications.db`), wherever its
  mediator inbox delivers (another machine, a pod): every message to the site's mediators with
  its case reference and status; its text while the service keeps the message (its delivered
  effects, 3 days by default), else the names of what it said. Read only, no personal data
  (the contact profile gives the case reference, site and mediator, nothing else).

`auto` (the default) reads the files when the data directory holds the site's inbox, else the
records.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, TextIO
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from pimms_servicekit.tables import UTCDateTime, effects
from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from pimms_cli.config import SERVICES, data_dir
from pimms_cli.terminal import console, table

Source = Literal["auto", "files", "records"]

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
    status: str = "sent"
    """sent (in the inbox), or, from the records, pending (not delivered yet) or failed."""
    templates: tuple[str, ...] = ()
    """What the message says, one template per notice (records only: a file does not say)."""
    source: str = "files"


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


# The columns of the notifications service's tables `pimms inbox` reads (its migrations own them;
# cli/tests/test_inbox.py builds them with those migrations, so a change there fails here).
_tables = MetaData()
_notifications = Table(
    "notifications",
    _tables,
    Column("notification_id", String(36)),
    Column("case_id", String(36)),
    Column("audience", String(10)),
    Column("channel", String(20)),
    Column("template", String(60)),
    Column("at", UTCDateTime),
    Column("status", String(10)),
    Column("moment_id", String(36)),
)
_profiles = Table(
    "contact_profiles",
    _tables,
    Column("case_id", String(36)),
    Column("case_reference", String(20)),
    Column("site_id", String(40)),
    Column("mediator_id", String(64)),
)
# The notices a message said, in order (one message per moment): `moment_id` is the message's id.
_moment_notices = Table(
    "moment_notices",
    _tables,
    Column("notification_id", String(36)),
    Column("template", String(60)),
    Column("at", UTCDateTime),
    Column("moment_id", String(36)),
)
MEDIATOR_INBOX = "mediator_inbox"
RECORDS_LIMIT = 500


def notifications_database_url(base: Path | None = None) -> str | None:
    """The notifications service's database; None when it is a SQLite file that does not exist."""
    spec = next(s for s in SERVICES if s.name == "notifications")
    url = spec.database_url(base or data_dir())
    if url.startswith("sqlite") and not Path(url.split("///", 1)[1]).exists():
        return None
    return url


async def read_records(
    url: str, *, site: str, mediator: str | None = None, limit: int = RECORDS_LIMIT
) -> list[InboxEntry]:
    """The messages the notifications service sent (or is sending) to the site's mediators,
    newest first, from its records."""
    n, p, m = _notifications, _profiles, _moment_notices
    query = (
        select(n.c.notification_id, n.c.at, n.c.template, n.c.status, p.c.case_reference)
        .add_columns(p.c.mediator_id)
        .join(p, p.c.case_id == n.c.case_id)
        .where(
            n.c.audience == "mediator",
            n.c.channel == MEDIATOR_INBOX,
            n.c.status != "merged",
            p.c.site_id == site,
        )
        .order_by(n.c.at.desc(), n.c.notification_id.desc())
        .limit(limit)
    )
    if mediator is not None:
        query = query.where(p.c.mediator_id == mediator)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).all()
            ids = [row.notification_id for row in rows]
            said: dict[str, list[str]] = defaultdict(list)
            texts: dict[str, tuple[str, str]] = {}
            for start in range(0, len(ids), RECORDS_LIMIT):
                chunk = ids[start : start + RECORDS_LIMIT]
                parts = await connection.execute(
                    select(m.c.moment_id, m.c.template, m.c.notification_id, m.c.at).where(
                        m.c.moment_id.in_(chunk)
                    )
                )
                # The message's first notice is the one whose id it took; the others follow.
                for moment_id, template, _, _ in sorted(
                    parts, key=lambda part: (part.notification_id != part.moment_id, part.at)
                ):
                    said[moment_id].append(template)
                kept = await connection.execute(
                    select(effects.c.idempotency_key, effects.c.payload).where(
                        effects.c.destination == MEDIATOR_INBOX,
                        effects.c.idempotency_key.in_(chunk),
                    )
                )
                for key, payload in kept:
                    text = _message_text(payload)
                    if text is not None:
                        texts[key] = text
    finally:
        await engine.dispose()
    entries = []
    for row in rows:
        subject, body = texts.get(row.notification_id, ("", ""))
        match = _REFERENCE.match(subject)
        templates = tuple(said.get(row.notification_id, ())) or (row.template,)
        entries.append(
            InboxEntry(
                notification_id=row.notification_id,
                site_id=site,
                mediator_id=row.mediator_id,
                date=row.at,
                case_reference=row.case_reference or (match.group(1) if match else None),
                subject=_REFERENCE.sub("", subject) or " + ".join(templates),
                body=body.strip(),
                status=row.status,
                templates=templates,
                source="records",
            )
        )
    return entries


def _message_text(payload: bytes) -> tuple[str, str] | None:
    """(subject, body) of a message as the notifications service handed it to the inbox."""
    try:
        data = json.loads(payload)
        return str(data.get("subject") or ""), str(data.get("body") or "")
    except (ValueError, AttributeError):
        return None


def as_json(entry: InboxEntry) -> str:
    """One entry as one JSON line."""
    data = asdict(entry)
    data["date"] = entry.date.isoformat() if entry.date else None
    return json.dumps(data, ensure_ascii=False)


def inbox_table(
    entries: list[InboxEntry], *, with_mediator: bool, with_status: bool = False
) -> object:
    """The entries as a table (dates in Paris time)."""
    headers = ["Date (Paris)", "Case", "Subject"]
    if with_mediator:
        headers.insert(1, "Mediator")
    if with_status:
        headers.append("Status")
    view = table(*headers)
    for entry in entries:
        when = entry.date.astimezone(PARIS).strftime("%d/%m %H:%M") if entry.date else "-"
        row = [when, entry.case_reference or "-", entry.subject]
        if with_mediator:
            row.insert(1, entry.mediator_id)
        if with_status:
            row.append(entry.status)
        view.add_row(*row)
    return view


def read_entries(
    site: str, mediator: str | None = None, *, source: Source = "auto", base: Path | None = None
) -> list[InboxEntry]:
    """The entries of the chosen source (see the module's docstring for `auto`)."""
    root = inbox_root(base)
    if source == "files" or (source == "auto" and (root / folder_name(site)).is_dir()):
        return read_inbox(root, site=site, mediator=mediator)
    url = notifications_database_url(base)
    if url is None:
        return []
    return asyncio.run(read_records(url, site=site, mediator=mediator))


def run_inbox(
    site: str,
    mediator: str | None = None,
    *,
    as_json_lines: bool = False,
    source: Source = "auto",
    base: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the inbox; 0, 1 when it is empty, 2 when the records cannot be read."""
    target = out or sys.stdout
    try:
        entries = read_entries(site, mediator, source=source, base=base)
    except (OSError, SQLAlchemyError) as exc:
        # Never the URL: it may hold a password.
        print(
            f"pimms inbox: cannot read the notifications service's records ({type(exc).__name__}); "
            "is PIMMS_NOTIFICATIONS_DATABASE_URL right, and the service migrated?",
            file=sys.stderr,
        )
        return 2
    if as_json_lines:
        for entry in entries:
            target.write(as_json(entry) + "\n")
        return 0 if entries else 1
    screen = console(file=target)
    if not entries:
        who = f"mediator {mediator} of site {site}" if mediator else f"site {site}"
        screen.print(f"No notification for {who}.")
        return 1
    with_status = any(entry.status != "sent" or entry.source == "records" for entry in entries)
    screen.print(inbox_table(entries, with_mediator=mediator is None, with_status=with_status))
    return 0
