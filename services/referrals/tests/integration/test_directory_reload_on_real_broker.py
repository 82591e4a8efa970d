"""A running referrals service takes a changed partner directory without restart (real broker).

The file is the platform's one directory, named by `PIMMS_PARTNER_DIRECTORY`; the service's own
background job notices the change: a partner added to the file is routed to, with the delays the
file gives it, and a broken version is refused with a warning while the last good one stays.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_contracts.partners import DIRECTORY_ENV
from pimms_referrals.app import build_runtime, partner_directory
from pimms_referrals.settings import ReferralsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.testing import KafkaEndpoint, Record, TopicWatcher, event_message, produce
from structlog.testing import capture_logs

pytestmark = pytest.mark.integration

EDF_ONLY = """
[[partner]]
id = "edf"
operator = "EDF"
categories = ["energy_bill"]
territory = "all"
format = "edf"
ack_within = "48h"
resolve_within = "15d"
transport = { kind = "kafka" }
"""

WATER_IN_PARIS = """
[[partner]]
id = "eau-de-paris"
operator = "Eau de Paris"
categories = ["water_bill"]
territory = ["75"]
format = "json"
ack_within = "3h"
resolve_within = "5d"
transport = { kind = "kafka" }
"""


def kind(record: Record) -> str:
    return (record.ce_type or "").removeprefix("fr.pimms.").removesuffix(".v1")


def write(path: Path, text: str, *, mtime: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime, mtime))  # distinct mtimes, whatever the file system's resolution


async def until(condition: Any, *, what: str, timeout: float = 60.0) -> None:
    """Wait for the running service's own job to do something (generous: the machine is loaded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_running_service_routes_with_the_changed_file_and_keeps_the_last_good_one(
    kafka: KafkaEndpoint,
    database_url: str,
    tmp_path: Path,
    build: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "partners.toml"
    write(path, EDF_ONLY, mtime=1_000_000_000_000_000_000)
    monkeypatch.delenv("PIMMS_REFERRALS_PARTNER_DIRECTORY", raising=False)
    monkeypatch.setenv(DIRECTORY_ENV, str(path))  # the platform's one file
    settings = ReferralsSettings(
        data_dir=tmp_path,
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
        timer_interval_s=0.05,
        directory_poll_interval_s=0.05,
    )
    assert settings.partner_directory == path
    clock = ManualClock()
    directory = partner_directory(settings)
    app = build_runtime(settings, clock=clock, directory=directory).build_app()
    await app.start()
    watcher = await TopicWatcher(kafka.bootstrap_servers, [topics.CASES]).start()

    def lifecycle(case_id: Any) -> list[Record]:
        return [r for r in watcher.of(topics.CASES) if r.key == str(case_id)]

    async def open_case(case: Any) -> Record:
        await produce(
            kafka.bootstrap_servers,
            [event_message(topics.INTAKE_CASES, case, key=str(case.case_id))],
        )
        await watcher.wait_for(lambda _: len(lifecycle(case.case_id)) >= 2, what="routed")
        return lifecycle(case.case_id)[1]

    try:
        before = await open_case(build.case_opened(category="water_bill", postal_code="75001"))
        assert kind(before) == "referral.unroutable"

        # the operator adds a partner to the file of the running platform
        write(path, EDF_ONLY + WATER_IN_PARIS, mtime=1_000_000_001_000_000_000)
        await until(lambda: directory.reloads == 1, what="the service reloading the file")
        case = build.case_opened(category="water_bill", postal_code="75001")
        requested = await open_case(case)
        assert (kind(requested), requested.json["partner_id"]) == (
            "referral.requested",
            "eau-de-paris",
        )
        # its SLA timers follow the file: no acknowledgement within its 3 h -> a reminder
        case_id, referral_id = str(case.case_id), requested.json["referral_id"]
        delivered = build.delivered(case_id, referral_id, partner_id="eau-de-paris")
        await produce(
            kafka.bootstrap_servers,
            [event_message(topics.PARTNER_REPORTS, delivered, key=case_id)],
        )
        await watcher.wait_for(
            lambda _: "referral.transmitted" in [kind(r) for r in lifecycle(case_id)],
            what="transmitted",
        )
        clock.advance(timedelta(hours=3, minutes=1))  # well short of EDF's 48 h
        await watcher.wait_for(
            lambda _: "referral.reminded" in [kind(r) for r in lifecycle(case_id)],
            what="the reminder after the file's ack_within",
        )
        [reminded] = [r for r in lifecycle(case_id) if kind(r) == "referral.reminded"]
        [transmitted] = [r for r in lifecycle(case_id) if kind(r) == "referral.transmitted"]
        due = datetime.fromisoformat(reminded.json["due_at"])
        assert due == datetime.fromisoformat(transmitted.json["occurred_at"]) + timedelta(hours=3)

        # a broken version is refused with a warning naming the partner and the field
        with capture_logs() as logs:
            write(
                path,
                EDF_ONLY + WATER_IN_PARIS.replace('["75"]', '["7"]'),
                mtime=1_000_000_002_000_000_000,
            )
            await until(lambda: directory.refused is not None, what="the refusal")
        [refused] = [e for e in logs if e["event"] == "config.refused"]
        assert refused["log_level"] == "warning"
        assert "'eau-de-paris'" in refused["error"]
        assert "territory" in refused["error"]
        again = await open_case(build.case_opened(category="water_bill", postal_code="75001"))
        assert again.json["partner_id"] == "eau-de-paris"  # the last good directory
    finally:
        await watcher.stop()
        await app.stop()
