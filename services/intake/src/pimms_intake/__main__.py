"""`python -m pimms_intake`: run the intake service."""

from __future__ import annotations

from pimms_servicekit.runtime import run_service

from pimms_intake.app import create_app
from pimms_intake.settings import IntakeSettings


def main() -> None:
    """Run until SIGINT or SIGTERM."""
    run_service(create_app, IntakeSettings)


if __name__ == "__main__":
    main()
