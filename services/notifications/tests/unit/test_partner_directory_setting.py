"""Which partner directory notifications reads: the platform's one file unless overridden."""

from __future__ import annotations

from pathlib import Path

import pytest
from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH, DIRECTORY_ENV
from pimms_notifications.app import partner_directory
from pimms_notifications.settings import NotificationsSettings
from pimms_servicekit.settings import SettingsError


def test_the_platform_directory_is_read_unless_the_service_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, own = tmp_path / "platform.toml", tmp_path / "own.toml"
    monkeypatch.delenv("PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY", raising=False)
    monkeypatch.setenv(DIRECTORY_ENV, str(platform))
    assert NotificationsSettings.load().partner_directory == platform
    monkeypatch.setenv("PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY", str(own))
    assert NotificationsSettings.load().partner_directory == own
    monkeypatch.delenv("PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY")
    monkeypatch.delenv(DIRECTORY_ENV)
    assert NotificationsSettings.load().partner_directory == DEFAULT_DIRECTORY_PATH


def test_a_broken_first_directory_stops_the_start_naming_the_variables(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[[partner]]\nid = 'x'\n", encoding="utf-8")
    settings = NotificationsSettings(partner_directory=broken)
    with pytest.raises(SettingsError, match="PIMMS_PARTNER_DIRECTORY") as error:
        partner_directory(settings)
    assert "PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY" in str(error.value)
    assert "partner 'x'" in str(error.value)


def test_a_changed_file_is_taken_and_a_broken_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "partners.toml"
    text = DEFAULT_DIRECTORY_PATH.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    watched = partner_directory(NotificationsSettings(partner_directory=path))
    edf = watched.current.get("edf")
    assert edf is not None
    assert edf.operator == "EDF"
    path.write_text(text.replace('operator = "EDF"', 'operator = "EDF Solidarité"'), "utf-8")
    assert watched.check()
    assert watched.current.get("edf").operator == "EDF Solidarité"  # type: ignore[union-attr]
    path.write_text(text.replace('territory = ["69"]', 'territory = "Rhône"', 1), "utf-8")
    assert not watched.check()
    assert watched.refused is not None
    assert "territory" in watched.refused
    assert watched.current.get("edf").operator == "EDF Solidarité"  # type: ignore[union-attr]
