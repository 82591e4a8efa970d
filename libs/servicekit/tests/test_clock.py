"""Platform time: real, by hand, or steered by PIMMS_TIME_* for the demo."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pimms_servicekit.clock import (
    ClockSettingError,
    ManualClock,
    SteeredClock,
    SystemClock,
    clock_from_env,
    is_steered,
    paris_time,
)

START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
ANCHOR = 1_800_000_000.0


class RealTime:
    """Real Unix time a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.value = now

    def __call__(self) -> float:
        return self.value


def test_a_steered_clock_runs_scale_times_faster_from_its_start() -> None:
    real = RealTime(ANCHOR)
    clock = SteeredClock(START, ANCHOR, 3600, real_time=real)
    assert clock.now() == START
    real.value += 2.5  # two and a half real seconds...
    assert clock.now() == START + timedelta(hours=2.5)  # ...are two and a half platform hours
    assert clock.now().tzinfo is UTC


def test_services_anchored_alike_share_one_clock() -> None:
    real = RealTime(ANCHOR + 10)
    first = SteeredClock(START, ANCHOR, 60, real_time=real)
    second = SteeredClock(START, ANCHOR, 60, real_time=real)
    assert first.now() == second.now() == START + timedelta(minutes=10)


def test_a_steered_start_in_paris_time_is_the_same_instant() -> None:
    paris = datetime.fromisoformat("2026-11-27T09:00:00+01:00")
    clock = SteeredClock(paris, ANCHOR, 1, real_time=RealTime(ANCHOR))
    assert clock.now() == START


@pytest.mark.parametrize("scale", [0, -2, float("nan"), float("inf")])
def test_a_steered_clock_refuses_a_scale_that_is_not_positive(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        SteeredClock(START, ANCHOR, scale)


def test_unset_environment_gives_the_real_clock() -> None:
    for environ in ({}, {"PIMMS_TIME_SCALE": "", "PIMMS_TIME_START": " "}):
        clock = clock_from_env(environ)
        assert isinstance(clock, SystemClock)
        assert not is_steered(clock)
    # pimms dev may set the anchor for everyone; alone it steers nothing
    assert isinstance(clock_from_env({"PIMMS_TIME_ANCHOR": str(ANCHOR)}), SystemClock)


def test_the_environment_steers_the_clock() -> None:
    clock = clock_from_env(
        {
            "PIMMS_TIME_SCALE": "720",
            "PIMMS_TIME_START": "2026-11-27T09:00:00+01:00",
            "PIMMS_TIME_ANCHOR": str(ANCHOR),
        }
    )
    assert isinstance(clock, SteeredClock)
    assert is_steered(clock)
    assert (clock.start, clock.anchor, clock.scale) == (START, ANCHOR, 720)
    assert clock.describe() == {
        "time_scale": 720.0,
        "time_start": "2026-11-27T08:00:00+00:00",
        "time_anchor": datetime.fromtimestamp(ANCHOR, UTC).isoformat(),
    }


def test_a_scale_alone_starts_from_now() -> None:
    before = datetime.now(UTC)
    clock = clock_from_env({"PIMMS_TIME_SCALE": "2"})
    assert isinstance(clock, SteeredClock)
    assert before - timedelta(seconds=1) <= clock.start <= datetime.now(UTC)
    assert clock.scale == 2


def test_a_start_alone_shifts_time_without_speeding_it() -> None:
    clock = clock_from_env({"PIMMS_TIME_START": "2027-01-01T00:00:00Z"})
    assert isinstance(clock, SteeredClock)
    assert clock.scale == 1
    assert abs(clock.now() - datetime(2027, 1, 1, tzinfo=UTC)) < timedelta(seconds=5)


def test_without_a_start_platform_time_begins_at_the_anchor() -> None:
    clock = clock_from_env({"PIMMS_TIME_SCALE": "10", "PIMMS_TIME_ANCHOR": str(ANCHOR)})
    assert isinstance(clock, SteeredClock)
    assert clock.start == datetime.fromtimestamp(ANCHOR, UTC)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PIMMS_TIME_SCALE": "fast"}, "PIMMS_TIME_SCALE"),
        ({"PIMMS_TIME_SCALE": "0"}, "PIMMS_TIME_SCALE"),
        ({"PIMMS_TIME_SCALE": "-5"}, "PIMMS_TIME_SCALE"),
        ({"PIMMS_TIME_SCALE": "nan"}, "PIMMS_TIME_SCALE"),
        ({"PIMMS_TIME_START": "tomorrow"}, "PIMMS_TIME_START"),
        ({"PIMMS_TIME_START": "2026-11-27T09:00:00"}, "PIMMS_TIME_START"),
        ({"PIMMS_TIME_SCALE": "60", "PIMMS_TIME_ANCHOR": "now"}, "PIMMS_TIME_ANCHOR"),
        ({"PIMMS_TIME_SCALE": "60", "PIMMS_TIME_ANCHOR": "-1"}, "PIMMS_TIME_ANCHOR"),
    ],
)
def test_invalid_settings_name_their_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ClockSettingError) as error:
        clock_from_env(environ)
    assert str(error.value).startswith(named)
    assert isinstance(error.value, ValueError)


def test_a_manual_clock_moves_only_by_hand() -> None:
    clock = ManualClock(START)
    assert clock.now() == clock.now() == START
    clock.advance(timedelta(days=2))
    assert clock.now() == START + timedelta(days=2)
    assert not is_steered(clock)


def test_paris_time_is_the_same_instant_with_its_offset() -> None:
    local = paris_time(START)
    assert local == START
    assert local.isoformat() == "2026-11-27T09:00:00+01:00"


def test_a_service_runs_on_the_clock_the_environment_steers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pimms_servicekit.routing import Handlers
    from pimms_servicekit.runtime import ServiceRuntime
    from pimms_servicekit.settings import ServiceSettings, SettingsError

    settings = ServiceSettings(data_dir=tmp_path)
    start = "2026-12-01T20:30:00+01:00"
    monkeypatch.setenv("PIMMS_TIME_SCALE", "60")
    monkeypatch.setenv("PIMMS_TIME_START", start)
    monkeypatch.setenv("PIMMS_TIME_ANCHOR", str(time.time()))
    runtime = ServiceRuntime(
        settings=settings, migrations_dir=tmp_path, handlers=Handlers(), repositories=dict
    )
    assert is_steered(runtime.clock)
    assert abs((runtime.clock.now() - datetime.fromisoformat(start)).total_seconds()) < 120
    monkeypatch.setenv("PIMMS_TIME_SCALE", "fast")
    with pytest.raises(SettingsError, match="PIMMS_TIME_SCALE"):
        ServiceRuntime(
            settings=settings, migrations_dir=tmp_path, handlers=Handlers(), repositories=dict
        )
