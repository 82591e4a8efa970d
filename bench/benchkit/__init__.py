"""The pieces `bench/e2e.py` is made of: load, partner, meter, baseline relay, figures, table.

`stats` and `table` are pure (tested in tests/bench/); the others need a broker and processes.
"""
