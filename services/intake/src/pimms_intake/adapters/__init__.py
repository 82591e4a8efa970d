"""Intake adapters: its database."""
