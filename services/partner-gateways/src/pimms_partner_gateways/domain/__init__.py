"""The gateway's pure core: dossiers, referrals, deliveries and partner answers (no I/O)."""
