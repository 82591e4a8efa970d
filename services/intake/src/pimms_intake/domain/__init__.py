"""Pure intake logic: validation, references, decisions. No I/O, no framework."""
