"""Alembic environment of reporting."""

from pimms_servicekit.migrations import run_env

from pimms_reporting.adapters.tables import metadata

run_env(metadata)
