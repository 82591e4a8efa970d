"""`python -m pimms_referrals`: run the referrals service."""

from __future__ import annotations

from pimms_servicekit.runtime import run_service

from pimms_referrals.app import create_app
from pimms_referrals.settings import ReferralsSettings


def main() -> None:
    """Run until SIGINT or SIGTERM."""
    run_service(create_app, ReferralsSettings)


if __name__ == "__main__":
    main()
