"""Version 1 of the PIMMS event contracts."""
