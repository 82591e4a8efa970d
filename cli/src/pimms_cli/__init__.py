"""The pimms command."""
