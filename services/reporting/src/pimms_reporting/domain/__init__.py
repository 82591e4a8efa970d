"""Pure reporting logic: activity facts, figures, and their CSV, JSON and HTML forms. No I/O."""
