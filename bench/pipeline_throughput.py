"""Intake throughput end to end on a real broker: needs in, answers out.

    uv run python bench/pipeline_throughput.py [--needs 20000] [--database sqlite|postgresql]

Spawns Tansu on a free port (or uses KAFKA_BOOTSTRAP_SERVERS), runs intake in this process,
publishes
N valid needs as fast as the producer can, and measures the time until N `need.accepted` answers
are on pimms.intake.feedback.v1 (validation, case + visitor rows, reference allocation, inbox,
outbox, relay, all included). Reports needs/s and the batch sizes the pipeline saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_intake.app import build_runtime
from pimms_intake.settings import IntakeSettings
from pimms_servicekit.kafka import consumer_from_start, ensure_topics
from pimms_servicekit.tansu import TansuBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PG_ADMIN = os.environ.get(
    "PIMMS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


async def count_answers(bootstrap: str, wanted: int, timeout: float) -> float:
    consumer = await consumer_from_start(bootstrap, [topics.INTAKE_FEEDBACK])
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < wanted and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            seen += sum(len(records) for records in batches.values())
        return time.monotonic()
    finally:
        await consumer.stop()
        if seen < wanted:
            raise SystemExit(f"only {seen}/{wanted} answers within {timeout}s")


async def main(needs: int, database: str) -> None:
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = TansuBroker().start()
        bootstrap = broker.bootstrap_servers
    data_dir = Path(tempfile.mkdtemp(prefix="pimms-bench-"))
    pg_name = f"pimms_bench_{uuid.uuid4().hex[:8]}"
    if database == "postgresql":
        admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"
    else:
        url = f"sqlite+aiosqlite:///{data_dir / 'intake.db'}"
    try:
        await ensure_topics(
            bootstrap,
            [
                topics.INTAKE_NEEDS,
                topics.INTAKE_FEEDBACK,
                topics.INTAKE_CASES,
                topics.CASES,
                topics.dead_letters(topics.INTAKE_NEEDS),
            ],
            partitions=4,
        )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        started = time.monotonic()
        futures = []
        for _ in range(needs):
            need = need_submitted()
            headers = [
                ("ce_specversion", b"1.0"),
                ("ce_id", str(uuid.uuid4()).encode()),
                ("ce_source", b"urn:pimms:bench"),
                ("ce_type", b"fr.pimms.need.submitted.v1"),
                ("ce_time", b"2026-11-27T09:30:00+01:00"),
                ("content-type", b"application/json"),
            ]
            futures.append(
                await producer.send(
                    topics.INTAKE_NEEDS,
                    key=need["submission_id"].encode(),
                    value=json.dumps(need).encode(),
                    headers=headers,
                )
            )
        await asyncio.gather(*futures)
        await producer.stop()
        produced = time.monotonic() - started
        settings = IntakeSettings(
            data_dir=data_dir,
            database_url=url,
            kafka_bootstrap_servers=bootstrap,
            kafka_fetch_max_wait_ms=20,
            kafka_session_timeout_ms=1000,
            kafka_heartbeat_interval_ms=300,
            relay_poll_interval_s=0.05,
        )
        runtime = build_runtime(settings)
        app = runtime.build_app()
        await app.start()
        first = time.monotonic()
        done = await count_answers(bootstrap, needs, timeout=600)
        await app.stop()
        elapsed = done - first
        stats = runtime.pipeline.stats
        print(f"database={database} needs={needs} produced_in={produced:.1f}s")
        rate = needs / elapsed
        join = settings.kafka_session_timeout_ms / 2000
        per_batch = stats.messages / max(stats.batches, 1)
        print(f"end-to-end (consumer start -> last answer): {elapsed:.1f}s = {rate:,.0f} needs/s")
        print(f"  (includes ~{join:.1f}s group join)")
        print(f"pipeline: {stats.batches} batches, {per_batch:.0f} messages/batch, ")
        print(f"  {stats.transient_failures} transient failures")
        print(f"relay published {runtime.relay.stats.published}")
    finally:
        if database == "postgresql":
            admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--needs", type=int, default=20_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.needs, arguments.database))
