"""The hostile-input test shares `hostile_inputs` and the fault suite's `harness`."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent / "faults", HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
