"""End-to-end drain: a backlog of needs through all four services as real processes.

    uv run python bench/e2e_drain.py [--needs 20000] [--database sqlite|postgresql] [--close]

A backlog of N valid needs (energy bills in Lyon: routed to EDF) is published on
`pimms.intake.needs.v1` before the platform starts. Then the four services start as separate
processes (`pimms dev`'s launcher, logs to files only) on a Tansu broker of their own, and a meter
reads EDF's feed until N referrals are there. With `--close`, a partner playing EDF answers each
referral `CLOS` / `SOLUTION_TROUVEE` and the meter waits for N `case.closed` on `pimms.cases.v1`
(the notifications service tells visitor and mediator all along).

Reported: the drain time and rate, and each service's CPU seconds (from /proc) per need and peak
RSS. Written to `bench/results/e2e-drain-<database>-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pimms_cli.config import SERVICES
from pimms_cli.platform import Platform
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_contracts.partners import load_directory
from pimms_servicekit.kafka import consumer_from_start, ensure_topics
from pimms_servicekit.tansu import TansuBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PG_ADMIN = os.environ.get(
    "PIMMS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TICKS = os.sysconf("SC_CLK_TCK")
EDF_FEED = topics.partner_referrals("edf")
EDF_ANSWERS = topics.partner_responses("edf")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_peak_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def need_headers() -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:pimms:bench"),
        ("ce_type", b"fr.pimms.need.submitted.v1"),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("content-type", b"application/json"),
    ]


async def publish_backlog(bootstrap: str, needs: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        futures = []
        for _ in range(needs):
            need = need_submitted()
            futures.append(
                await producer.send(
                    topics.INTAKE_NEEDS,
                    key=need["submission_id"].encode(),
                    value=json.dumps(need).encode(),
                    headers=need_headers(),
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def play_edf(bootstrap: str, stop: asyncio.Event) -> None:
    """Answer every referral on EDF's feed: closed, solution found."""
    consumer = await consumer_from_start(bootstrap, [EDF_FEED])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            for records in batches.values():
                for record in records:
                    reference = json.loads(record.value)["reference"]
                    answer = {
                        "reference": reference,
                        "statut": "CLOS",
                        "resultat": "SOLUTION_TROUVEE",
                        "horodatage": datetime.now(UTC).isoformat(),
                    }
                    await producer.send(
                        EDF_ANSWERS, key=reference.encode(), value=json.dumps(answer).encode()
                    )
            await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()


async def count(
    bootstrap: str, topic: str, wanted: int, timeout: float, ce_type: str | None
) -> float:
    """Wait until `wanted` records (of `ce_type`) are on `topic`; the time it happened."""
    consumer = await consumer_from_start(bootstrap, [topic])
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < wanted:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {seen}/{wanted} on {topic} within {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    if (
                        ce_type is None
                        or dict(record.headers or ()).get("ce_type") == ce_type.encode()
                    ):
                        seen += 1
        return time.monotonic()
    finally:
        await consumer.stop()


async def create_databases(prefix: str) -> dict[str, str]:
    admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    urls = {}
    async with admin.connect() as connection:
        for spec in SERVICES:
            name = f"{prefix}_{spec.name.replace('-', '_')}"
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
            urls[spec.name] = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    await admin.dispose()
    return urls


async def drop_databases(prefix: str) -> None:
    admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        for spec in SERVICES:
            name = f"{prefix}_{spec.name.replace('-', '_')}"
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def main(needs: int, database: str, close: bool, timeout: float) -> dict[str, Any]:
    broker = TansuBroker().start()
    bootstrap = broker.bootstrap_servers
    data_dir = Path(tempfile.mkdtemp(prefix="pimms-e2e-bench-"))
    prefix = f"pimms_bench_{uuid.uuid4().hex[:8]}"
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # services start from cached bytecode
    os.environ.update(
        KAFKA_ENABLE_IDEMPOTENCE="false",
        KAFKA_SESSION_TIMEOUT_MS="3000",
        KAFKA_HEARTBEAT_INTERVAL_MS="500",
        KAFKA_FETCH_MAX_WAIT_MS="20",
        PIMMS_LOG_LEVEL=os.environ.get("PIMMS_LOG_LEVEL", "INFO"),
    )
    urls = await create_databases(prefix) if database == "postgresql" else {}
    platform = Platform(data_dir=data_dir, bootstrap=bootstrap, echo=False, database_urls=urls)
    stop_edf = asyncio.Event()
    try:
        await ensure_topics(
            bootstrap, topics.platform_topics(load_directory().kafka_partner_ids()), partitions=4
        )
        print(f"publishing a backlog of {needs} needs ...", flush=True)
        await publish_backlog(bootstrap, needs)
        print(f"starting the four services on {database} ...", flush=True)
        started = time.monotonic()
        await platform.start()
        pids = {name: r.process.pid for name, r in platform.running.items()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        edf = asyncio.create_task(play_edf(bootstrap, stop_edf)) if close else None
        fed_at = await count(bootstrap, EDF_FEED, needs, timeout, None)
        closed_at = (
            await count(bootstrap, topics.CASES, needs, timeout, "fr.pimms.case.closed.v1")
            if close
            else None
        )
        await asyncio.sleep(2.0)  # let notifications finish what is in flight
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        rss = {name: rss_peak_mb(pid) for name, pid in pids.items()}
        stop_edf.set()
        if edf is not None:
            await edf
    finally:
        await platform.stop()
        broker.stop()
        if urls:
            await drop_databases(prefix)
    drain = fed_at - started
    result: dict[str, Any] = {
        "database": database,
        "needs": needs,
        "closed_loop": close,
        "seconds_to_partner_feed": round(drain, 2),
        "needs_per_second_to_partner": round(needs / drain, 1),
        "seconds_to_case_closed": round(closed_at - started, 2) if closed_at else None,
        "cpu_ms_per_need": {n: round(1000 * c / needs, 3) for n, c in cpu.items()},
        "cpu_seconds": {n: round(c, 2) for n, c in cpu.items()},
        "peak_rss_mb": {n: round(r, 1) for n, r in rss.items()},
        "note": "includes process start, migrations and consumer-group joins",
    }
    return result


def report(result: dict[str, Any]) -> None:
    print()
    print(
        f"{result['needs']} needs on {result['database']}: "
        f"{result['seconds_to_partner_feed']} s to EDF's feed "
        f"({result['needs_per_second_to_partner']}/s)"
        + (
            f", {result['seconds_to_case_closed']} s to every case closed"
            if result["seconds_to_case_closed"]
            else ""
        )
    )
    print(f"{'service':<18} {'CPU ms/need':>12} {'CPU s':>8} {'peak RSS MB':>12}")
    for name in result["cpu_ms_per_need"]:
        print(
            f"{name:<18} {result['cpu_ms_per_need'][name]:>12} "
            f"{result['cpu_seconds'][name]:>8} {result['peak_rss_mb'][name]:>12}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--needs", type=int, default=20_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--close", action="store_true", help="EDF answers and every case closes")
    parser.add_argument("--timeout", type=float, default=900)
    arguments = parser.parse_args()
    outcome = asyncio.run(
        main(arguments.needs, arguments.database, arguments.close, arguments.timeout)
    )
    report(outcome)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = Path(__file__).parent / "results" / f"e2e-drain-{arguments.database}-{stamp}.json"
    out.write_text(json.dumps(outcome, indent=2) + "\n")
    print(f"written {out}")
