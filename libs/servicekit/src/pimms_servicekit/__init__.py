"""Plumbing shared by the PIMMS services. No business logic lives here."""
