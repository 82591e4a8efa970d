"""`python -m pimms_partner_gateways`: run the partner-gateways service."""

from __future__ import annotations

from pimms_servicekit.runtime import run_service

from pimms_partner_gateways.app import create_app
from pimms_partner_gateways.settings import GatewaySettings


def main() -> None:
    """Run until SIGINT or SIGTERM."""
    run_service(create_app, GatewaySettings)


if __name__ == "__main__":
    main()
