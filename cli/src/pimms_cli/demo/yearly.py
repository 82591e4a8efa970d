"""The demo's last step: the yearly partnership review of what it just played (`pimms report`).

The reporting service projects pimms.cases.v1 and pimms.notifications.v1 into its own tables;
once it has caught up (nothing left in flight), `pimms report --year <the demo's year>` writes
the HTML review into `<data dir>/reports`, and the demo prints where it is.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from pimms_servicekit.health import heartbeat_path

from pimms_cli.config import SERVICES
from pimms_cli.probes import platform_in_flight
from pimms_cli.report import ReportOptions, report_command, report_environment

SETTLE_TIMEOUT_S = 15.0


def demo_year(occurred: Iterable[str], *, default: int) -> int:
    """The year most of the demo's lifecycle events happened in, on platform time."""
    years: Counter[int] = Counter()
    for text in occurred:
        try:
            years[datetime.fromisoformat(text).year] += 1
        except ValueError:
            continue
    return years.most_common(1)[0][0] if years else default


def running_endpoints(data: Path) -> list[tuple[str, str]]:
    """(service, `http://127.0.0.1:<port>`) of the services a running platform's heartbeats name."""
    endpoints = []
    for spec in SERVICES:
        try:
            body = json.loads(heartbeat_path(data, spec.name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        port = body.get("http_port") if isinstance(body, dict) else None
        if isinstance(port, int):
            endpoints.append((spec.name, f"http://127.0.0.1:{port}"))
    return endpoints


async def settle(endpoints: list[tuple[str, str]], *, timeout: float = SETTLE_TIMEOUT_S) -> bool:
    """Wait until nothing is in flight (seen twice in a row), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        left = await platform_in_flight(endpoints)
        quiet = quiet + 1 if left.drained else 0
        if quiet >= 2:
            return True
        await asyncio.sleep(0.5)
    return False


async def write_review(year: int) -> tuple[list[Path], str]:
    """Run `pimms report --year <year>` (HTML); the files written, or the error it printed."""
    command = report_command(ReportOptions(year=year, format="html"))
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        env=report_environment(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return [], lines[-1] if lines else f"exit status {done.returncode}"
    return [Path(line) for line in done.stdout.splitlines() if line.strip()], ""
