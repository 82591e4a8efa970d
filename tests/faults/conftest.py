"""The fault and hostile-input tests share helpers (`harness`, `hostile_inputs`) from these folders.

The fault suite (marker `faults`) runs only with `make test-faults` (`-m faults`): `make test` and
any run that does not select the marker leave it out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent / "faults", HERE.parent / "hostile"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def pytest_configure(config: pytest.Config) -> None:
    """Register the `faults` marker."""
    config.addinivalue_line("markers", "faults: breaks real processes; run by make test-faults")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the fault suite out unless `-m` names it."""
    if "faults" in (config.option.markexpr or ""):
        return
    left_out = [i for i in items if i.get_closest_marker("faults") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [i for i in items if i.get_closest_marker("faults") is None]
