"""Pure referrals logic: routing, the referral state machine, case closure. No I/O, no framework."""
