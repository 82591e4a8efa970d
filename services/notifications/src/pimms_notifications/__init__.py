"""PIMMS notifications service."""
