"""`pimms trace <key>`: where is this case? Its timeline across services, from their own records.

Every service keeps, in its own database, what it consumed (inbox) and what it published (outbox,
with the time Kafka took it). The trace reads them all (read only), for the case named by its
reference, its id, the front office's submission id or a referral id, and prints one timeline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from pimms_servicekit.clock import paris_time
from pimms_servicekit.tables import inbox, outbox, trace_keys
from rich.table import Table
from rich.text import Text
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pimms_cli.config import (
    DEFAULT_BOOTSTRAP,
    SERVICES,
    ServiceSpec,
    configured_bootstrap,
    data_dir,
)
from pimms_cli.terminal import console, table

_REFERENCE = re.compile(r"^[A-Z0-9]+-\d{4}-\d{6,7}$")


@dataclass(frozen=True)
class Step:
    """One thing a service did about the case."""

    at: datetime
    service: str
    action: str
    what: str
    where: str
    note: str


def _engine(spec: ServiceSpec, directory: Path, url: str | None = None) -> AsyncEngine | None:
    url = url or spec.database_url(directory)
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        if not path.exists():
            return None
    return create_async_engine(url)


async def _case_ids(engines: dict[str, AsyncEngine], key: str) -> tuple[set[str], set[str]]:
    case_ids: set[str] = set()
    aliases: set[str] = set()
    for engine in engines.values():
        async with engine.connect() as connection:
            found = await connection.execute(
                select(trace_keys.c.case_id).where(trace_keys.c.alias == key)
            )
            case_ids.update(found.scalars())
            known = await connection.execute(
                select(outbox.c.case_id).where(outbox.c.case_id == key).limit(1)
            )
            case_ids.update(known.scalars())
    for engine in engines.values():
        if not case_ids:
            break
        async with engine.connect() as connection:
            names = await connection.execute(
                select(trace_keys.c.alias).where(trace_keys.c.case_id.in_(case_ids))
            )
            aliases.update(names.scalars())
    return case_ids, aliases


@dataclass(frozen=True)
class CaseRef:
    """A case as support staff name it."""

    case_id: str
    reference: str | None


def _open_engines(directory: Path, urls: dict[str, str] | None) -> dict[str, AsyncEngine]:
    engines: dict[str, AsyncEngine] = {}
    for spec in SERVICES:
        engine = _engine(spec, directory, (urls or {}).get(spec.name))
        if engine is not None:
            engines[spec.name] = engine
    return engines


async def case_refs(
    keys: Iterable[str], directory: Path | None = None, urls: dict[str, str] | None = None
) -> dict[str, CaseRef]:
    """The case of each key the services know (submission ids, references, referral ids)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    engines = _open_engines(directory or data_dir(), urls)
    case_of: dict[str, str] = {}
    names: dict[str, set[str]] = {}
    try:
        for engine in engines.values():
            async with engine.connect() as connection:
                found = await connection.execute(
                    select(trace_keys.c.alias, trace_keys.c.case_id).where(
                        trace_keys.c.alias.in_(wanted)
                    )
                )
                for alias, case_id in found:
                    case_of[alias] = case_id
        case_ids = set(case_of.values()) | {k for k in wanted if k not in case_of}
        for engine in engines.values():
            async with engine.connect() as connection:
                found = await connection.execute(
                    select(trace_keys.c.alias, trace_keys.c.case_id).where(
                        trace_keys.c.case_id.in_(case_ids)
                    )
                )
                for alias, case_id in found:
                    names.setdefault(case_id, set()).add(alias)
    except Exception:  # a database not migrated yet, or unreachable: no names, not an error
        return {}
    finally:
        for engine in engines.values():
            await engine.dispose()
    refs: dict[str, CaseRef] = {}
    for key in wanted:
        case_id = case_of.get(key) or (key if key in names else None)
        if case_id is not None:
            reference = next(
                (a for a in sorted(names.get(case_id, ())) if _REFERENCE.match(a)), None
            )
            refs[key] = CaseRef(case_id, reference)
    return refs


async def collect(
    key: str, directory: Path | None = None, urls: dict[str, str] | None = None
) -> tuple[set[str], set[str], list[Step], list[str]]:
    """Case ids, their aliases, the timeline, and the services whose records could not be read."""
    directory = directory or data_dir()
    engines: dict[str, AsyncEngine] = {}
    unread: list[str] = []
    for spec in SERVICES:
        engine = _engine(spec, directory, (urls or {}).get(spec.name))
        if engine is None:
            unread.append(f"{spec.name} (no database at {spec.database_url(directory)})")
        else:
            engines[spec.name] = engine
    steps: list[Step] = []
    try:
        case_ids, aliases = await _case_ids(engines, key)
        for name, engine in engines.items():
            async with engine.connect() as connection:
                received = await connection.execute(
                    select(inbox)
                    .where(inbox.c.case_id.in_(case_ids))
                    .order_by(inbox.c.processed_at)
                )
                for row in received:
                    steps.append(
                        Step(
                            row.processed_at,
                            name,
                            "consumed",
                            row.event_type or "?",
                            f"{row.topic}/{row.partition}@{row.offset}",
                            row.outcome,
                        )
                    )
                condition = outbox.c.case_id.in_(case_ids)
                if not case_ids:  # a refused submission has no case: its answers are keyed by it
                    condition = outbox.c.key == key.encode()
                emitted = await connection.execute(
                    select(outbox).where(or_(condition)).order_by(outbox.c.id)
                )
                for row in emitted:
                    dead = row.event_type == "dead_letter"
                    sent = (
                        f"published {_clock(row.sent_at)}" if row.sent_at else "NOT YET PUBLISHED"
                    )
                    note = f"{row.detail}; {sent}" if row.detail else sent
                    steps.append(
                        Step(
                            row.created_at,
                            name,
                            "dead-lettered" if dead else "emitted",
                            "" if dead else (row.event_type or "?"),
                            row.topic,
                            note,
                        )
                    )
    finally:
        for engine in engines.values():
            await engine.dispose()
    steps.sort(key=lambda s: (s.at, s.action != "consumed"))
    return case_ids, aliases, steps, unread


def _clock(value: datetime | None) -> str:
    return paris_time(value).strftime("%H:%M:%S.%f")[:-3] if value else "-"


def timeline_table(steps: list[Step]) -> Table:
    """The steps as a table that fits 100 columns: a day line when the date changes."""
    grid = table("time (Paris)", "service / action", "event", "topic / note")
    for column in grid.columns[:2]:
        column.no_wrap = True
    grid.columns[2].ratio = 2
    grid.columns[2].overflow = "fold"
    grid.columns[3].ratio = 3
    grid.columns[3].overflow = "fold"
    day = None
    for step in steps:
        local = paris_time(step.at)
        if local.date() != day:
            day = local.date()
            grid.add_row(Text(f"-- {day.isoformat()}", style="dim"))
        who = Text(step.service)
        who.append("\n" + step.action, style=ACTION_STYLES.get(step.action, "dim"))
        where = Text(step.where)
        if step.note:
            where.append("\n" + step.note, style="dim")
        grid.add_row(_clock(step.at), who, step.what.removeprefix("fr.pimms."), where)
    return grid


ACTION_STYLES = {"dead-lettered": "bold red", "replayed": "green", "consumed": "cyan"}


async def replay_steps(bootstrap: str, *, case_ids: set[str], keys: set[str]) -> list[Step]:
    """Replays of the case's dead letters (`pimms dead-letters replay`), when Kafka answers."""
    from pimms_servicekit.kafka import broker_reachable

    from pimms_cli.deadletter_io import read_replays

    if not await broker_reachable(bootstrap, timeout=1.0):
        return []
    return [
        Step(r.replayed_at, "support", "replayed", "", r.original_topic, f"{r.dlt_id} ({r.reason})")
        for r in await read_replays(bootstrap)
        if r.case_id in case_ids or (r.key is not None and r.key in keys)
    ]


async def run_trace(key: str, *, as_json: bool = False) -> int:
    """Print the timeline; exit 1 when nothing is known of the key."""
    case_ids, aliases, steps, unread = await collect(key)
    if steps:
        bootstrap = configured_bootstrap() or DEFAULT_BOOTSTRAP
        steps = sorted(
            [*steps, *await replay_steps(bootstrap, case_ids=case_ids, keys={key, *aliases})],
            key=lambda s: (s.at, s.action != "consumed"),
        )
    if as_json:
        for step in steps:
            print(json.dumps({**asdict(step), "at": step.at.isoformat()}))
        return 0 if steps else 1
    if not steps:
        print(f"Nothing is known of {key!r} in the platform's records.")
        for note in unread:
            print(f"  not read: {note}")
        return 1
    references = sorted(a for a in aliases if _REFERENCE.match(a))
    title = ", ".join(references) or key
    print(
        f"Case {title}"
        + (f"  (case id {', '.join(sorted(case_ids))})" if case_ids else "  (no case opened)"),
        flush=True,
    )
    out = console()
    out.print(timeline_table(steps))
    for note in unread:
        out.print(f"(not read: {note})")
    return 0
