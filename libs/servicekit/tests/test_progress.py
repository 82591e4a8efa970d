"""Stalls are visible: work without progress is logged once when it starts and once when it ends,
and readiness is false meanwhile (a fake clock and a fake lag, no sleeping)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from pimms_servicekit.health import Heartbeat, heartbeat_path, is_alive
from pimms_servicekit.progress import (
    BROKER_UNREACHABLE,
    HANDLER_STUCK,
    LAGGING,
    ProgressWatch,
    stall_after_from_env,
)
from pimms_servicekit.settings import SettingsError
from structlog.testing import capture_logs


class Fake:
    """A clock the test moves and a lag it sets (None: the broker does not answer)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.lag: int | None = 0

    def now(self) -> float:
        return self.t

    async def measure(self) -> int | None:
        if self.lag is None:
            raise TimeoutError("the broker does not answer")
        return self.lag


def watch(fake: Fake) -> ProgressWatch:
    return ProgressWatch(lag=fake.measure, stall_after=10.0, now=fake.now)


async def advance(w: ProgressWatch, fake: Fake, seconds: float, *, step: float = 2.0) -> None:
    end = fake.t + seconds
    while fake.t < end:
        fake.t += step
        await w.check()


def events(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if str(e["event"]).startswith("consumer.")]


async def test_an_unreachable_broker_is_a_stall_logged_once_at_start_and_once_at_end() -> None:
    fake = Fake()
    w = watch(fake)
    with capture_logs() as logs:
        await advance(w, fake, 30)  # idle: nothing to do is no stall
        assert w.healthy
        assert events(logs) == []
        fake.lag = None  # broker frozen
        await advance(w, fake, 8)
        assert w.healthy
        await advance(w, fake, 12)
        assert not w.healthy
        assert w.describe()["reason"] == BROKER_UNREACHABLE
        await advance(w, fake, 20)  # still frozen: no more lines
        fake.lag = 3  # thawed, and it catches up
        w.begin()
        w.end()
        await advance(w, fake, 2)
    assert w.healthy
    found = events(logs)
    assert [e["event"] for e in found] == ["consumer.stalled", "consumer.recovered"]
    assert found[0]["reason"] == BROKER_UNREACHABLE
    assert found[0]["log_level"] == "error"
    assert found[1]["stalled_s"] == pytest.approx(42.0)  # from the last check that saw it well
    assert w.stalls == 1


async def test_a_stuck_handler_with_lag_is_a_stall_until_its_batch_ends() -> None:
    fake = Fake()
    w = watch(fake)
    fake.lag = 50
    with capture_logs() as logs:
        w.begin()
        await advance(w, fake, 10)
        assert not w.healthy
        assert w.describe()["reason"] == HANDLER_STUCK
        w.end()
        await advance(w, fake, 2)
    assert w.healthy
    assert [e["event"] for e in events(logs)] == ["consumer.stalled", "consumer.recovered"]


async def test_lag_that_does_not_shrink_is_a_stall_and_steady_progress_is_not() -> None:
    fake = Fake()
    w = watch(fake)
    fake.lag = 7
    with capture_logs() as logs:
        for _ in range(30):  # a batch every 2 s: progress, however large the lag
            w.begin()
            w.end()
            await advance(w, fake, 2)
        assert w.healthy
        assert events(logs) == []
        await advance(w, fake, 12)  # no batch any more while 7 records wait
        assert not w.healthy
        assert w.describe()["reason"] == LAGGING
        fake.lag = 0  # caught up (someone else took the partitions)
        await advance(w, fake, 2)
    assert w.healthy
    assert [e["event"] for e in events(logs)] == ["consumer.stalled", "consumer.recovered"]


def test_the_stall_bound_is_a_setting() -> None:
    assert stall_after_from_env({}) == 10.0
    assert stall_after_from_env({"PIMMS_STALL_AFTER_S": "3.5"}) == 3.5
    with pytest.raises(SettingsError):
        stall_after_from_env({"PIMMS_STALL_AFTER_S": "soon"})


def test_two_instances_of_a_service_beat_in_their_own_files(tmp_path: Path) -> None:
    first = Heartbeat(data_dir=tmp_path, service="intake", instance="intake-1")
    second = Heartbeat(data_dir=tmp_path, service="intake", instance="intake-2")
    first.write("running")
    second.write("running")
    one = json.loads(heartbeat_path(tmp_path, "intake-1").read_text())
    two = json.loads(heartbeat_path(tmp_path, "intake-2").read_text())
    assert (one["instance"], two["instance"]) == ("intake-1", "intake-2")
    assert is_alive(tmp_path, "intake-1")
    assert is_alive(tmp_path, "intake-2")
    assert is_alive(tmp_path, "intake")  # the service beats while any instance does
    assert not is_alive(tmp_path, "referrals")
    # intake-2 stops beating: it is not alive, intake-1 and the service still are
    body = {**two, "heartbeat_at": time.time() - 60}
    heartbeat_path(tmp_path, "intake-2").write_text(json.dumps(body))
    assert not is_alive(tmp_path, "intake-2")
    assert is_alive(tmp_path, "intake-1")
    assert is_alive(tmp_path, "intake")


def test_one_instance_beats_in_the_service_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIMMS_INSTANCE", raising=False)
    Heartbeat(data_dir=tmp_path, service="intake").write("running")
    assert heartbeat_path(tmp_path, "intake").exists()
    monkeypatch.setenv("PIMMS_INSTANCE", "intake-3")
    Heartbeat(data_dir=tmp_path, service="intake").write("running")
    assert json.loads(heartbeat_path(tmp_path, "intake-3").read_text())["pid"] == os.getpid()


async def test_a_measure_that_hangs_counts_as_an_unreachable_broker() -> None:
    fake = Fake()
    release = asyncio.Event()
    calls = 0

    async def hanging() -> int | None:
        nonlocal calls
        calls += 1
        await release.wait()
        return 0

    w = ProgressWatch(lag=hanging, stall_after=10.0, now=fake.now, measure_timeout=0.01)
    with capture_logs() as logs:
        await advance(w, fake, 12)
        assert not w.healthy
        assert w.describe()["reason"] == BROKER_UNREACHABLE
        assert calls == 1  # one measure at a time
        release.set()
        await advance(w, fake, 2)
    assert w.healthy
    assert [e["event"] for e in events(logs)] == ["consumer.stalled", "consumer.recovered"]
