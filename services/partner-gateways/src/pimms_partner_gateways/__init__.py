"""PIMMS partner-gateways service."""
