"""PIMMS referrals service."""
