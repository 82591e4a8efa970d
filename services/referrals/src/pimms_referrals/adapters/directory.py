"""The partner directory file, reloaded when it changes; a broken new version is not taken."""

from __future__ import annotations

import os
from pathlib import Path

from pimms_contracts.partners import PartnerDirectory, load_directory
from pimms_servicekit.logging import get_logger

log = get_logger("pimms.referrals.directory")

_Signature = tuple[int, int, int]


class DirectoryFile:
    """Gives the current directory: the file is read again when its mtime (or size) changes.

    The first read must succeed (the service cannot route without partners). Later, a version
    that does not load is logged as an error and the last good directory stays in use until the
    file changes again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature = self._stat()
        self._directory = load_directory(path)

    def current(self) -> PartnerDirectory:
        """The directory as the file says now, or the last good one."""
        try:
            signature = self._stat()
        except OSError as exc:
            log.error("partner_directory.unreadable", path=str(self.path), error=str(exc))
            return self._directory
        if signature != self._signature:
            self._signature = signature
            try:
                self._directory = load_directory(self.path)
            except ValueError as exc:
                log.error(
                    "partner_directory.invalid",
                    path=str(self.path),
                    error=str(exc)[:900],
                    kept_partners=[p.id for p in self._directory.partners],
                )
            else:
                log.info(
                    "partner_directory.reloaded",
                    path=str(self.path),
                    partners=[p.id for p in self._directory.partners],
                )
        return self._directory

    def _stat(self) -> _Signature:
        stat = os.stat(self.path)
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
