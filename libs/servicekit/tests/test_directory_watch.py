"""A configuration file reloaded when it changes; a bad new version refused, the last good kept."""

from __future__ import annotations

import os
from pathlib import Path

from pimms_servicekit.directory_watch import WatchedFile
from structlog.testing import capture_logs


def _load(path: Path) -> dict[str, int]:
    text = path.read_text(encoding="utf-8")
    if not text.strip().isdigit():
        raise ValueError(f"partner 'acme': field 'count': {text.strip()!r} is not a number")
    return {"count": int(text)}


def _write(path: Path, text: str, tick: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(tick * 1_000_000_000, tick * 1_000_000_000))


def test_a_changed_file_is_used_and_a_bad_one_refused_with_its_message(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    _write(path, "1", 1)
    seen: list[dict[str, int]] = []
    watched = WatchedFile(path, load=_load, what="partner directory", on_change=seen.append)
    assert watched.current == {"count": 1}
    assert not watched.check()  # unchanged: not read again

    _write(path, "2", 2)
    assert watched.check()
    assert watched.current == {"count": 2}
    assert seen == [{"count": 2}]

    with capture_logs() as logs:
        _write(path, "two", 3)
        assert not watched.check()
    assert watched.current == {"count": 2}  # the last good one stays
    [refused] = [e for e in logs if e["event"] == "config.refused"]
    assert "partner 'acme': field 'count'" in refused["error"]
    assert watched.refused is not None

    path.unlink()
    assert not watched.check()
    assert watched.current == {"count": 2}
    _write(path, "3", 4)
    assert watched.check()
    assert (watched.current, watched.refused, watched.reloads) == ({"count": 3}, None, 2)
