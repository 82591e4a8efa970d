"""Reporting: the yearly partnership review, a projection of the platform's events."""
