"""Notifications adapters: its database, its template files, the partner directory."""
