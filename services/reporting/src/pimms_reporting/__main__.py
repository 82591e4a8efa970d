"""`python -m pimms_reporting`: run the reporting service; `... report ...`: write a review."""

from __future__ import annotations

import sys

from pimms_servicekit.runtime import run_service

from pimms_reporting.app import create_app
from pimms_reporting.settings import ReportingSettings


def main() -> None:
    """Run until SIGINT or SIGTERM, or write the report `report ...` asks for."""
    if sys.argv[1:2] == ["report"]:
        from pimms_reporting.report import main as report

        raise SystemExit(report(sys.argv[2:]))
    run_service(create_app, ReportingSettings)


if __name__ == "__main__":
    main()
