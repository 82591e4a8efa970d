"""`pimms report`: the yearly partnership review, written by the reporting service's command.

The cli starts services as processes and never imports them: this runs
`python -m pimms_reporting report ...` with the platform's environment (data directory, the
reporting database from `PIMMS_REPORTING_DATABASE_URL` or `$PIMMS_DATA_DIR/reporting.db`, the
broker for `--rebuild`), and prints where the files are.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pimms_cli.config import DEFAULT_BOOTSTRAP, configured_bootstrap, data_dir

FORMATS = ("csv", "html", "json")


@dataclass(frozen=True)
class ReportOptions:
    """What `pimms report` was asked for."""

    year: int
    site: str | None = None
    partner: str | None = None
    format: str = "html"
    out: Path | None = None
    rebuild: bool = False


def report_command(options: ReportOptions, *, python: str = sys.executable) -> list[str]:
    """The reporting service's command line for these options."""
    command = [python, "-m", "pimms_reporting", "report", "--year", str(options.year)]
    command += ["--format", options.format]
    if options.site:
        command += ["--site", options.site]
    if options.partner:
        command += ["--partner", options.partner]
    if options.out is not None:
        command += ["--out", str(options.out)]
    if options.rebuild:
        command.append("--rebuild")
    return command


def report_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the report process: the platform's data directory and broker."""
    env = dict(environ)
    env["PIMMS_DATA_DIR"] = str(data_dir().resolve())
    env["KAFKA_BOOTSTRAP_SERVERS"] = configured_bootstrap() or DEFAULT_BOOTSTRAP
    return env


async def run_report(options: ReportOptions) -> int:
    """Write the report; print each file's path (exit code of the reporting command)."""
    if options.rebuild:
        from pimms_servicekit.kafka import broker_reachable

        bootstrap = configured_bootstrap() or DEFAULT_BOOTSTRAP
        if not await broker_reachable(bootstrap):
            print(
                f"pimms report --rebuild: no Kafka broker answers at {bootstrap} (start "
                "`pimms dev`, or set KAFKA_BOOTSTRAP_SERVERS)",
                file=sys.stderr,
            )
            return 1
    completed = await asyncio.to_thread(
        subprocess.run,
        report_command(options),
        env=report_environment(os.environ),
        check=False,
    )
    return completed.returncode
