"""Alembic environment of referrals."""

from pimms_servicekit.migrations import run_env

from pimms_referrals.adapters.tables import metadata

run_env(metadata)
