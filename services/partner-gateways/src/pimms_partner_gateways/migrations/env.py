"""Alembic environment of partner-gateways."""

from pimms_servicekit.migrations import run_env

from pimms_partner_gateways.adapters.tables import metadata

run_env(metadata)
