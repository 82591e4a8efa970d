"""Pure referrals logic: routing, lifecycle table, SLA ladder, document checklists, closure."""
