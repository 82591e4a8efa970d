"""Referrals adapters: its database (the partner directory file is servicekit's WatchedFile)."""
