"""`python -m pimms_notifications`: run the notifications service."""

from __future__ import annotations

from pimms_servicekit.runtime import run_service

from pimms_notifications.app import create_app
from pimms_notifications.settings import NotificationsSettings


def main() -> None:
    """Run until SIGINT or SIGTERM."""
    run_service(create_app, NotificationsSettings)


if __name__ == "__main__":
    main()
