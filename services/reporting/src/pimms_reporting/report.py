"""`python -m pimms_reporting report`: the yearly review from the projection, as files.

`pimms report` runs this as a process (the cli never imports a service). `--rebuild` empties the
projection and reads the topics again from their start before writing the report.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pimms_contracts.partners.directory import DirectoryError, directory_path, load_directory
from pimms_servicekit.db import Database
from pimms_servicekit.logging import configure_logging
from pimms_servicekit.settings import SettingsError

from pimms_reporting.adapters.replay import replay_from_start
from pimms_reporting.adapters.store import empty_projection, load_facts
from pimms_reporting.app import MIGRATIONS, build_runtime
from pimms_reporting.domain.figures import Review, compute_review
from pimms_reporting.domain.formats import comments_csv, review_csv, review_json
from pimms_reporting.domain.html import review_html
from pimms_reporting.settings import ReportingSettings

Format = Literal["csv", "html", "json"]


@dataclass(frozen=True)
class ReportRequest:
    """What `pimms report` was asked for."""

    year: int
    site: str | None
    partner: str | None
    format: Format
    out_dir: Path
    rebuild: bool = False


def report_files(
    review: Review, *, fmt: Format, partner_names: Mapping[str, str]
) -> dict[str, bytes]:
    """The files of a review in one format, by name."""
    stem = "-".join(
        part
        for part in ("revue", str(review.year), review.site, review.partner)
        if part is not None
    )
    if fmt == "json":
        return {f"{stem}.json": review_json(review)}
    if fmt == "html":
        return {f"{stem}.html": review_html(review, partner_names=partner_names).encode("utf-8")}
    files = {f"{stem}.csv": review_csv(review, partner_names=partner_names)}
    if review.audience == "internal":
        files[f"{stem}-commentaires.csv"] = comments_csv(review, partner_names=partner_names)
    return files


def partner_names() -> dict[str, str]:
    """Operator names from the platform's partner directory (`PIMMS_PARTNER_DIRECTORY`, read
    again for each report, so a partner added by data is named), ids alone if it cannot be read."""
    path = directory_path(override_env="PIMMS_REPORTING_PARTNER_DIRECTORY")
    try:
        return {p.id: p.operator for p in load_directory(path).partners}
    except DirectoryError:
        return {}


async def make_report(settings: ReportingSettings, request: ReportRequest) -> list[Path]:
    """Rebuild the projection if asked, compute the review, write its files; return their paths."""
    if request.rebuild:
        runtime = build_runtime(settings)
        try:
            await runtime.prepare_database()
            await empty_projection(runtime.database, consumer=runtime.pipeline.consumer)
            await replay_from_start(runtime)
        finally:
            await runtime.database.dispose()
    database = Database(settings.resolved_database_url())
    try:
        await database.migrate(MIGRATIONS)
        facts = await load_facts(database)
    finally:
        await database.dispose()
    review = compute_review(facts, year=request.year, site=request.site, partner=request.partner)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in report_files(
        review, fmt=request.format, partner_names=partner_names()
    ).items():
        path = request.out_dir / name
        path.write_bytes(content)
        written.append(path)
    return written


def parser() -> argparse.ArgumentParser:
    """The options of `pimms report` (the same here)."""
    parser = argparse.ArgumentParser(
        prog="pimms report", description="The yearly partnership review, from the projection."
    )
    parser.add_argument("--year", type=int, required=True, help="the year reviewed, e.g. 2026")
    parser.add_argument("--site", help="one PIMMS site only, e.g. lyon-8")
    parser.add_argument(
        "--partner", help="one partner only, ready to send to it (small counts hidden)"
    )
    parser.add_argument("--format", choices=("csv", "html", "json"), default="html")
    parser.add_argument("--out", type=Path, help="directory (default: <data dir>/reports)")
    parser.add_argument(
        "--rebuild", action="store_true", help="replay the topics from their start first"
    )
    return parser


def main(argv: list[str]) -> int:
    """Write the report; print the path of each file written."""
    args = parser().parse_args(argv)
    # stdout is for the paths written; the command's own log lines are warnings, on stderr.
    configure_logging(service="reporting", level="WARNING", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        settings = ReportingSettings.load()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    request = ReportRequest(
        year=args.year,
        site=args.site,
        partner=args.partner,
        format=args.format,
        out_dir=args.out or settings.data_dir / "reports",
        rebuild=args.rebuild,
    )
    for path in asyncio.run(make_report(settings, request)):
        print(path.resolve())
    return 0
