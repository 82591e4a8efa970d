"""The baseline: plain aiokafka relays on the same broker, as many hops as the platform has.

The platform's path to a partner is three consume -> produce hops (intake, referrals,
partner-gateways). The baseline publishes the same needs (same size, same headers) to
`bench.relay.0`, then starts three processes, each consuming `bench.relay.<n>` in a consumer
group and producing every record unchanged to `bench.relay.<n+1>` (no database, no
validation), and counts what reaches `bench.relay.3`.

    python -m benchkit.relay <bootstrap> <from topic> <to topic> <group>   (one hop, until SIGTERM)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pimms_servicekit.kafka import consumer_from_start, ensure_topics

from benchkit.load import need_message, publish_backlog
from benchkit.observe import ProcessWatch
from benchkit.stats import flow

HOPS = 3
BENCH_DIR = str(Path(__file__).resolve().parent.parent)


def relay_topic(n: int) -> str:
    """`bench.relay.<n>`: 0 is the input, HOPS the output."""
    return f"bench.relay.{n}"


async def hop(bootstrap: str, source: str, target: str, group: str) -> None:
    """Consume `source` in `group`, produce each record to `target`, until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        fetch_max_wait_ms=int(os.environ.get("KAFKA_FETCH_MAX_WAIT_MS", "20")),
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            futures = [
                await producer.send(target, key=r.key, value=r.value, headers=list(r.headers))
                for records in batches.values()
                for r in records
            ]
            if futures:
                await asyncio.gather(*futures)
    finally:
        await consumer.stop()
        await producer.stop()


async def count_until(
    bootstrap: str,
    topic: str,
    wanted: int,
    deadline: float,
    processes: list[asyncio.subprocess.Process],
) -> list[float]:
    """The Kafka timestamps (s) of records on `topic`, until `wanted` of them, the deadline or a
    relay's death (RuntimeError)."""
    consumer = await consumer_from_start(bootstrap, [topic])
    times: list[float] = []
    try:
        while len(times) < wanted and time.time() < deadline:
            dead = [p.returncode for p in processes if p.returncode is not None]
            if dead:
                raise RuntimeError(f"a baseline relay exited with code {dead[0]}")
            batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batches.values():
                times += [r.timestamp / 1000 for r in records]
    finally:
        await consumer.stop()
    return times


async def run_baseline(
    bootstrap: str, count: int, *, timeout: float = 300, extra_pids: dict[str, int] | None = None
) -> dict[str, Any]:
    """Publish `count` needs to hop 0, run the relays, time what reaches the last hop."""
    await ensure_topics(bootstrap, [relay_topic(n) for n in range(HOPS + 1)], partitions=4)
    await publish_backlog(bootstrap, count, topic=relay_topic(0), message=need_message)
    env = dict(os.environ, PYTHONPATH=BENCH_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.time()
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchkit.relay",
            bootstrap,
            relay_topic(n),
            relay_topic(n + 1),
            f"bench-relay-{n}",
            env=env,
            start_new_session=True,
        )
        for n in range(HOPS)
    ]
    pids = {f"relay-{n}": p.pid for n, p in enumerate(processes)}
    watch = ProcessWatch({**pids, **(extra_pids or {})})
    watch.start()
    try:
        times = await count_until(bootstrap, relay_topic(HOPS), count, started + timeout, processes)
        figures = watch.read()
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
    return {
        "hops": HOPS,
        "messages": count,
        "complete": len(times) >= count,
        "flow": flow(times, started),
        "processes": figures,
        "note": "times from the relays' start (process start and group join included in overall)",
    }


if __name__ == "__main__":
    asyncio.run(hop(*sys.argv[1:5]))
