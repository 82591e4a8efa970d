"""A configuration file a running service reloads when it changes (the partner directory).

`WatchedFile(path, load=load_directory)` holds the last good value. `check()` reads the file again
when its modification time, size or inode changed; a new file that fails validation is refused
with the loader's message (for the directory: the partner and the field at fault) in a warning,
and the last good value stays. `watch(interval)` checks forever: run it as a background job.

    directory = WatchedFile(path, load=load_directory, what="partner directory")
    runtime.background("directory-watch", lambda: directory.watch(interval=2.0))
    ... directory.current  # in handlers, through the repositories
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from pimms_servicekit.logging import get_logger, scrub_text

log = get_logger("pimms.directory")

T = TypeVar("T")

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class WatchedFile(Generic[T]):
    """The last good value of a file, read again when the file changes."""

    def __init__(
        self,
        path: Path,
        *,
        load: Callable[[Path], T],
        what: str = "file",
        on_change: Callable[[T], None] | None = None,
    ) -> None:
        self.path = path
        self.what = what
        self._load = load
        self._on_change = on_change
        self._stamp = _stamp(path)
        self.current: T = load(path)  # at start a bad file is the caller's configuration error
        self.refused: str | None = None  # the message of the last refused version, if any
        self.reloads = 0

    def check(self) -> bool:
        """Reload if the file changed; True when a new good version was taken."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if stamp is None:
            log.warning(
                "config.file_missing", what=self.what, path=str(self.path), kept="last good"
            )
            return False
        try:
            value = self._load(self.path)
        except ValueError as exc:
            self.refused = str(exc)
            log.warning(
                "config.refused",
                what=self.what,
                path=str(self.path),
                error=scrub_text(str(exc))[:1000],
                kept="last good",
            )
            return False
        self.current = value
        self.refused = None
        self.reloads += 1
        if self._on_change is not None:
            self._on_change(value)
        log.info("config.reloaded", what=self.what, path=str(self.path), reloads=self.reloads)
        return True

    async def watch(self, *, interval: float = 2.0) -> None:
        """Check every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(OSError):
                self.check()
