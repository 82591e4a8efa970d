"""Export the JSON Schema of every event to contracts/schemas/, or check they are up to date.

python -m pimms_contracts.schemas export [DIR]
python -m pimms_contracts.schemas check [DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pimms_contracts.registry import ALL_EVENTS

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_of(event: Any) -> dict[str, Any]:
    """The JSON Schema of one event model, with its CloudEvents type."""
    schema: dict[str, Any] = event.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:pimms:schema:{event.ce_type}"
    schema["x-cloudevents-type"] = event.ce_type
    return schema


def rendered() -> dict[str, str]:
    """File name -> JSON text, for every event."""
    return {
        f"{event.ce_type}.json": json.dumps(schema_of(event), indent=2, sort_keys=True) + "\n"
        for event in ALL_EVENTS
    }


def export(directory: Path) -> list[str]:
    """Write every schema; return the names of the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    wanted = rendered()
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    for stale in directory.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
            changed.append(stale.name)
    return changed


def differences(directory: Path) -> list[str]:
    """Sentences naming each committed schema that disagrees with the models."""
    wanted = rendered()
    problems = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing (a new event? run `make schemas`)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{name}: differs from the model (breaking? then it is a new .v2 type)")
    problems += [
        f"{stale.name}: no model has this type any more"
        for stale in directory.glob("*.json")
        if stale.name not in wanted
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "check"
    directory = Path(args[1]) if len(args) > 1 else DEFAULT_DIR
    if command == "export":
        for name in export(directory):
            print(f"wrote {directory / name}")
        return 0
    if command == "check":
        problems = differences(directory)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
