"""A heartbeat file per running service instance: `pimms demo` and probes read it.

One instance of a service writes `run/<service>.json`; with several (`pimms dev --instances N`
sets `PIMMS_INSTANCE`, e.g. `intake-2`) each writes `run/<instance>.json`, so that they do not
overwrite each other's beat. `is_alive(data_dir, "intake")` then asks whether any instance of the
service beats, `is_alive(data_dir, "intake-2")` about that one instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INSTANCE_ENV = "PIMMS_INSTANCE"


def heartbeat_path(data_dir: Path, service: str) -> Path:
    """Where a service (or a named instance of it) writes its heartbeat."""
    return data_dir / "run" / f"{service}.json"


def instance_name(service: str, environ: dict[str, str] | None = None) -> str:
    """This process's instance name: `PIMMS_INSTANCE` when set, else the service's name."""
    env = os.environ if environ is None else environ
    return env.get(INSTANCE_ENV) or service


class Heartbeat:
    """Writes `{pid, service, state, heartbeat_at, ...}` every few seconds while running."""

    def __init__(
        self,
        *,
        data_dir: Path,
        service: str,
        interval: float = 2.0,
        details: Callable[[], dict[str, Any]] | None = None,
        instance: str | None = None,
    ) -> None:
        self.instance = instance or instance_name(service)
        self.path = heartbeat_path(data_dir, self.instance)
        self.service = service
        self.interval = interval
        self.details = details or dict
        self.started_at = time.time()
        self._task: asyncio.Task[None] | None = None

    def write(self, state: str) -> None:
        """Write the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "service": self.service,
            "instance": self.instance,
            "pid": os.getpid(),
            "state": state,
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
            **self.details(),
        }
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(body), encoding="utf-8")
        temporary.replace(self.path)

    def start(self) -> None:
        """Beat in the background."""
        self.write("running")
        self._task = asyncio.create_task(self._beat(), name="heartbeat")

    async def stop(self) -> None:
        """Stop beating and remove the file."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(OSError):
                self.write("running")


def is_alive(data_dir: Path, service: str, *, max_age: float = 10.0) -> bool:
    """True when the heartbeat of `service` (a service or one named instance) is fresh and its
    process exists; for a service run as several instances, when any of them beats."""
    if _beats(heartbeat_path(data_dir, service), max_age):
        return True
    return any(
        _beats(path, max_age, service=service)
        for path in sorted((data_dir / "run").glob("*.json"))
        if path.stem != service
    )


def _beats(path: Path, max_age: float, *, service: str | None = None) -> bool:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(body, dict) or (service is not None and body.get("service") != service):
        return False
    try:
        if time.time() - float(body.get("heartbeat_at", 0)) > max_age:
            return False
        os.kill(int(body["pid"]), 0)
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """`python -m pimms_servicekit.health <service>`: exit 0 when the service beats (probes)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m pimms_servicekit.health <service> [max-age-seconds]")
        return 2
    data_dir = Path(os.environ.get("PIMMS_DATA_DIR", ".pimms"))
    max_age = float(args[1]) if len(args) > 1 else 10.0
    return 0 if is_alive(data_dir, args[0], max_age=max_age) else 1


if __name__ == "__main__":
    raise SystemExit(main())
