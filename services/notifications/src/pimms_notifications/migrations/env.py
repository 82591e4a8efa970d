"""Alembic environment of notifications."""

from pimms_servicekit.migrations import run_env

from pimms_notifications.adapters.tables import metadata

run_env(metadata)
