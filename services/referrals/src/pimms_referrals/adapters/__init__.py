"""Referrals adapters: its database and the partner directory file."""
