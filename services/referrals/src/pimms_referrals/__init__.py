"""Referrals: routes needs to partners, follows each referral's lifecycle, closes cases."""
