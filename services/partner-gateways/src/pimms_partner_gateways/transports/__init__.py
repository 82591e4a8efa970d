"""How partner messages travel: Kafka feeds now; file drops and signed webhooks as dispatchers."""
