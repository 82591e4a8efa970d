"""`pimms logs <reference | case id | submission id>`: one case's log lines from every service.

Each service writes structlog JSON lines to `<data dir>/logs/<service>.log`. The key is resolved
to case ids (the services' trace keys, and log lines that carry the key beside a `case_id`); the
case's lines, and those sharing its correlation id, are merged in time order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pimms_servicekit.clock import paris_time
from rich.text import Text

from pimms_cli.config import data_dir
from pimms_cli.terminal import console
from pimms_cli.trace import case_refs

# Fields that name a case or one of its parts: a line carrying the key in one of them is the case's.
NAMING_FIELDS = ("case_id", "case_reference", "submission_id", "referral_id")
# Plumbing shown only in --json.
HIDDEN_FIELDS = frozenset(
    {"ts", "level", "service", "event", "case_id", "correlation_id", "event_id", "kafka_batch",
     "batch_size", "logger"}
)  # fmt: skip
LEVEL_STYLES = {"warning": "yellow", "error": "bold red", "critical": "bold red", "debug": "dim"}
SERVICE_STYLES = ("cyan", "magenta", "green", "blue", "yellow", "bright_cyan")


@dataclass(frozen=True)
class LogLine:
    """One structlog line."""

    timestamp: datetime
    service: str
    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        """A field as text."""
        value = self.fields.get(name)
        return str(value) if value is not None else None

    def to_json(self) -> dict[str, Any]:
        """One object with at least timestamp, service, level and event."""
        rest = {
            k: v for k, v in self.fields.items() if k not in {"ts", "level", "service", "event"}
        }
        return {
            "timestamp": self.timestamp.isoformat(),
            "service": self.service,
            "level": self.level,
            "event": self.event,
            **rest,
        }


def parse_line(text: str, *, service: str) -> LogLine | None:
    """A JSON log line (None for anything else: a traceback, a library's plain text)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or "ts" not in data:
        return None
    try:
        timestamp = datetime.fromisoformat(str(data["ts"]))
    except ValueError:
        return None
    return LogLine(
        timestamp=timestamp,
        service=str(data.get("service") or service),
        level=str(data.get("level", "info")).lower(),
        event=str(data.get("event", "?")),
        fields=data,
    )


def merge(lines: Iterable[LogLine]) -> list[LogLine]:
    """Lines of every service in time order (a service's own order kept for equal times)."""
    return sorted(lines, key=lambda line: line.timestamp)


@dataclass
class CaseFilter:
    """Which lines belong to a case: its ids, what names it, its correlation ids."""

    key: str
    case_ids: set[str] = field(default_factory=set)
    correlations: set[str] = field(default_factory=set)

    def learn(self, lines: Iterable[LogLine]) -> None:
        """Case ids of lines naming the key; correlation ids of the case's lines."""
        for line in lines:
            case_id = line.get("case_id")
            if case_id and any(line.get(f) == self.key for f in NAMING_FIELDS):
                self.case_ids.add(case_id)
        for line in lines:
            correlation = line.get("correlation_id")
            if correlation and line.get("case_id") in self.case_ids:
                self.correlations.add(correlation)

    def __call__(self, line: LogLine) -> bool:
        """True when the line is about the case."""
        case_id = line.get("case_id")
        if case_id is not None:
            return case_id in self.case_ids
        if any(line.get(f) == self.key for f in NAMING_FIELDS):
            return True
        return line.get("correlation_id") in self.correlations


def case_lines(lines: Sequence[LogLine], case: CaseFilter) -> list[LogLine]:
    """The case's lines, in time order."""
    case.learn(lines)
    return merge(line for line in lines if case(line))


class LogFiles:
    """Every `*.log` of a directory, read from where the last read stopped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._positions: dict[Path, int] = {}

    def read_new(self) -> list[LogLine]:
        """The complete lines written since the last call, every file."""
        found: list[LogLine] = []
        for path in sorted(self.directory.glob("*.log")):
            found += self._read(path)
        return found

    def _read(self, path: Path) -> list[LogLine]:
        position = self._positions.get(path, 0)
        try:
            if path.stat().st_size < position:
                position = 0  # the file was truncated or replaced
            with path.open("rb") as file:
                file.seek(position)
                chunk = file.read()
        except OSError:
            return []
        complete = chunk.rfind(b"\n") + 1  # a line being written is read next time
        self._positions[path] = position + complete
        return [
            line
            for raw in _lines(chunk[:complete])
            if (line := parse_line(raw, service=path.stem)) is not None
        ]


def _lines(chunk: bytes) -> Iterator[str]:
    for raw in chunk.decode("utf-8", errors="replace").splitlines():
        if raw.strip():
            yield raw


def readable(line: LogLine, *, styles: dict[str, str] | None = None) -> Text:
    """`HH:MM:SS.mmm service LEVEL event key=value ...` (Paris time)."""
    styles = styles if styles is not None else {}
    style = styles.setdefault(line.service, SERVICE_STYLES[len(styles) % len(SERVICE_STYLES)])
    text = Text()
    text.append(paris_time(line.timestamp).strftime("%H:%M:%S.%f")[:-3], style="dim")
    text.append(f" {line.service:<16} ", style=style)
    text.append(f"{line.level.upper():<7} ", style=LEVEL_STYLES.get(line.level, ""))
    text.append(line.event, style="bold")
    for name, value in line.fields.items():
        if name not in HIDDEN_FIELDS:
            text.append(f" {name}=", style="dim")
            text.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return text


async def run_logs(
    key: str,
    *,
    as_json: bool = False,
    follow: bool = False,
    directory: Path | None = None,
    poll_seconds: float = 0.5,
) -> int:
    """Print the case's lines; with `follow`, keep printing new ones until interrupted."""
    logs = (directory or data_dir()) / "logs"
    case = CaseFilter(key)
    known = (await case_refs([key], directory=directory)).get(key)
    if known is not None:
        case.case_ids.add(known.case_id)
    files = LogFiles(logs)
    seen = files.read_new()
    lines = case_lines(seen, case)
    out = console()
    styles: dict[str, str] = {}

    def emit(batch: Iterable[LogLine]) -> None:
        for line in batch:
            if as_json:
                print(json.dumps(line.to_json(), ensure_ascii=False), flush=True)
            else:
                out.print(readable(line, styles=styles))

    if not lines and not follow:
        print(f"No log line about {key!r} in {logs}.")
        return 1
    if not as_json and case.case_ids:
        out.print(Text(f"Case {key} (case id {', '.join(sorted(case.case_ids))})", style="bold"))
    emit(lines)
    while follow:
        await asyncio.sleep(poll_seconds)
        new = files.read_new()
        if new:
            emit(case_lines(new, case))
    return 0
