"""Intake: the front door of the platform for front-office tools."""
