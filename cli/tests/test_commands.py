"""The `pimms` command as a user runs it: `pimms dev` until SIGTERM, `pimms demo`, `pimms trace`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pimms_cli.config import SERVICES
from pimms_servicekit.testing import KafkaEndpoint

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def pimms(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pimms_cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_dev_runs_the_platform_and_stops_it_cleanly_on_sigterm(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "PIMMS_DATA_DIR": str(tmp_path),
    }
    process = pimms("dev", env=env)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("platform ready"):
                break
            assert time.monotonic() < deadline, "pimms dev did not get ready: " + "".join(
                lines[-20:]
            )
        else:
            pytest.fail("pimms dev exited before being ready: " + "".join(lines[-20:]))
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        lines.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines)
    assert process.returncode == 0, output[-2000:]
    assert "using the Kafka broker at" in output  # KAFKA_BOOTSTRAP_SERVERS set: no broker started
    for spec in SERVICES:
        assert f"{spec.name:<16} | {{" in output, f"{spec.name}'s lines are not on the terminal"
        log = (tmp_path / "logs" / f"{spec.name}.log").read_text(encoding="utf-8")
        assert '"event": "service.started"' in log
        assert '"event": "service.stopped"' in log, f"{spec.name} did not stop cleanly"
        assert (tmp_path / f"{spec.name}.db").exists()
        assert not (tmp_path / "run" / f"{spec.name}.json").exists()  # heartbeat removed at stop


def test_demo_plays_the_morning_and_every_case_reaches_its_state(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["PIMMS_DATA_DIR"] = str(tmp_path)
    process = pimms("demo", env=env)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-4000:]
    assert "19/19 cases reached their expected state" in output
    assert "FAIL" not in output
    # the closed loop, on the demo's steered clock: a silent EDF chased to expiry, a held file
    assert "platform time: 43200x faster" in output
    assert "got relance" in output
    assert "held, missing" in output
    # and the yearly review of the demo's year, where it says
    review = output.split("Yearly review ", 1)[1].split("\n", 1)[0]
    path = Path(review.split(": ", 1)[1])
    assert path.parent == tmp_path / "reports"
    assert path.name.startswith("revue-")
    assert "Revue annuelle" in path.read_text(encoding="utf-8")
    assert list((tmp_path / "notifications" / "sms").glob("*.txt"))
    assert list((tmp_path / "notifications" / "email").glob("*.eml"))
    assert list((tmp_path / "notifications" / "mediator_inbox").rglob("*.txt"))
    reference = output.rsplit("pimms trace ", 1)[1].split("`", 1)[0]
    trace = subprocess.run(
        [sys.executable, "-m", "pimms_cli.main", "trace", reference],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert trace.returncode == 0, trace.stdout + trace.stderr
    assert f"Case {reference}" in trace.stdout
    for spec in SERVICES:
        assert spec.name in trace.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "pimms_cli.main", "trace", "NOPE-2026-000000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 1
    assert "Nothing is known" in unknown.stdout
