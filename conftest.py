"""Shared test fixtures for the whole workspace."""

pytest_plugins = ["pimms_servicekit.testing"]
