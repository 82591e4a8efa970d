"""A gateway process killed (SIGKILL) halfway through an inbound file applies each line once.

The gateway runs as a real process (`python -m pimms_partner_gateways`) on a real broker and a
real database; Eau du Grand Lyon drops one answer file of many lines, the process is killed while
the lines are being applied, then started again. Each line must reach referrals exactly once: one
report (one `report_id`) per referral, none lost, none applied twice, and the file moved to
`processed/` with no errors file.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH, DIRECTORY_ENV
from pimms_contracts.v1.internal import IntakeCaseOpened
from pimms_partner_gateways.adapters.eau_grand_lyon import ENCODING
from pimms_servicekit.kafka import ensure_topics
from pimms_servicekit.testing import KafkaEndpoint, TopicWatcher, event_message, produce
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# At 2-3 ms a line, the first half lasts about half a second: room to be seen and killed in.
LINES = 400
PARTNER = "eau-grand-lyon"
HEADER = "REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE"


def directory(tmp_path: Path) -> Path:
    text_ = DEFAULT_DIRECTORY_PATH.read_text(encoding="utf-8")
    assert 'export_every = "5m"' in text_
    path = tmp_path / "partners.toml"
    path.write_text(text_.replace('export_every = "5m"', 'export_every = "1s"'), encoding="utf-8")
    return path


def gateway_env(kafka: KafkaEndpoint, database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIMMS_", "KAFKA_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # start from cached bytecode
    env.update(
        PIMMS_DATA_DIR=str(tmp_path),
        PIMMS_GATEWAYS_DATABASE_URL=database_url,
        PIMMS_GATEWAYS_HTTP_PORT="0",
        PIMMS_GATEWAYS_INBOUND_POLL_INTERVAL_S="0.1",
        PIMMS_GATEWAYS_INBOUND_LINES_PER_TRANSACTION="1",  # many transactions: room to be killed
        PIMMS_GATEWAYS_RELAY_POLL_INTERVAL_S="0.05",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
        KAFKA_ENABLE_IDEMPOTENCE=str(kafka.supports_idempotence).lower(),
        KAFKA_SESSION_TIMEOUT_MS="1000",
        KAFKA_HEARTBEAT_INTERVAL_MS="300",
        KAFKA_FETCH_MAX_WAIT_MS="20",
        PYTHONUNBUFFERED="1",
    )
    env[DIRECTORY_ENV] = str(directory(tmp_path))
    return env


class Gateway:
    """The gateway as a process of its own, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pimms_partner_gateways"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])


@pytest.fixture
def gateway(kafka: KafkaEndpoint, database_url: str, tmp_path: Path) -> Iterator[Gateway]:
    running = Gateway(gateway_env(kafka, database_url, tmp_path), tmp_path / "gateway.log")
    try:
        yield running
    finally:
        running.stop()


async def eventually(check: Callable[[], Any], *, what: str, gateway: Gateway) -> Any:
    deadline = time.monotonic() + 240  # a loaded 2-core machine starts a process slowly
    while time.monotonic() < deadline:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; gateway said:\n{gateway.tail()}")


async def test_a_gateway_killed_halfway_through_a_file_applies_each_line_once(
    kafka: KafkaEndpoint,
    gateway: Gateway,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    cases = [
        case_opened(category="water_bill", case_reference=f"LYON8-2026-{900000 + n:06d}")
        for n in range(LINES)
    ]
    requests = [referral_requested(case, PARTNER) for case in cases]
    references = {str(r.referral_id) for r in requests}
    engine = create_async_engine(gateway.env["PIMMS_GATEWAYS_DATABASE_URL"])
    data_dir = Path(gateway.env["PIMMS_DATA_DIR"])
    # the topic exists before anyone watches it (a consumer does not notice a topic born later)
    await ensure_topics(kafka.bootstrap_servers, [topics.PARTNER_REPORTS], partitions=4)
    watcher = await TopicWatcher(kafka.bootstrap_servers, [topics.PARTNER_REPORTS]).start()

    def reports(kind: str) -> list[dict[str, Any]]:
        return [
            r.json
            for r in watcher.of(topics.PARTNER_REPORTS, f"fr.pimms.gateway.{kind}.v1")
            if r.json["referral_id"] in references
        ]

    async def lines_applied() -> int:
        try:
            async with engine.connect() as connection:
                found = await connection.execute(
                    text("SELECT count(*) FROM partner_inputs WHERE partner_id = :p"),
                    {"p": PARTNER},
                )
                return int(found.scalar_one())
        except Exception:  # the table does not exist before the gateway migrated
            return 0

    gateway.start()
    try:
        await produce(
            kafka.bootstrap_servers,
            [
                *(event_message(topics.INTAKE_CASES, c, key=str(c.case_id)) for c in cases),
                *(event_message(topics.CASES, r, key=str(r.case_id)) for r in requests),
            ],
        )

        async def all_delivered() -> bool:
            await watcher.poll()
            return {r["referral_id"] for r in reports("delivered")} == references

        await eventually(all_delivered, what="every referral exported", gateway=gateway)

        inbound = data_dir / "partners" / PARTNER / "inbound"
        inbound.mkdir(parents=True, exist_ok=True)
        lines = [HEADER, *(f"{r};ACCEPTE;28/11/2026 10:00;;" for r in sorted(references))]
        part = inbound / ".REPONSES_1.csv.part"
        part.write_bytes("".join(f"{line}\r\n" for line in lines).encode(ENCODING))
        part.rename(inbound / "REPONSES_1.csv")  # the partner drops it whole

        async def halfway() -> bool:
            # within the first half: the rest of the file is still ahead when the kill lands (with
            # 120 lines, a kill on seeing "not all yet" came after the last line on a fast run)
            return 0 < await lines_applied() < LINES // 2

        await eventually(halfway, what="the file being applied", gateway=gateway)
        gateway.kill()
        applied_before_restart = await lines_applied()
        assert 0 < applied_before_restart < LINES, "killed too late to cut the file short"
        assert (inbound / "REPONSES_1.csv").exists()  # not finished: still waiting

        gateway.start()  # a new process takes the file up where the dead one left it
        processed = inbound / "processed"
        await eventually(
            (processed / "REPONSES_1.csv").exists, what="the file processed", gateway=gateway
        )
        assert await lines_applied() == LINES

        async def every_line_reported() -> bool:
            await watcher.poll()
            return {r["referral_id"] for r in reports("status_reported")} == references

        await eventually(every_line_reported, what="every line reported", gateway=gateway)
        await asyncio.sleep(2)  # whatever the dead process left in its outbox is out by now
        await watcher.poll()
        by_referral: dict[str, set[str]] = {}
        for report in reports("status_reported"):
            assert report["status"] == "accepted"
            by_referral.setdefault(report["referral_id"], set()).add(report["report_id"])
        # a record published twice by the relay is the same report; a line applied twice is not
        assert {r: len(ids) for r, ids in by_referral.items()} == dict.fromkeys(references, 1)
        assert not (processed / "REPONSES_1.errors.csv").exists()
        assert not (inbound / "REPONSES_1.csv").exists()
    finally:
        gateway.stop()
        with contextlib.suppress(Exception):
            await watcher.stop()
        await engine.dispose()
