"""Alembic environment of intake."""

from pimms_servicekit.migrations import run_env

from pimms_intake.adapters.tables import metadata

run_env(metadata)
