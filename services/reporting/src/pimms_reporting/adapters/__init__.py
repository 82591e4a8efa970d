"""Reporting adapters: its tables, what it reads from Kafka, the rebuild from the topics' start."""
