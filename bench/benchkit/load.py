"""The load generator: valid `need.submitted` on `pimms.intake.needs.v1`, as a backlog or at a rate.

Each need is the contract's example (energy bill in Lyon: routed to EDF) with a new submission id,
and its `submitted_at` is its `ce_time`: the partner's `dateDemande` is the need's `submitted_at`,
so the meter reads on the partner message when its need was submitted (latency, no lookup).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted

SUBMITTED = b"fr.pimms.need.submitted.v1"


def need_message() -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, CloudEvents headers) of one need; its `submitted_at` is its `ce_time`."""
    now = datetime.now(UTC).isoformat()
    need = need_submitted(submitted_at=now)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:pimms:bench"),
        ("ce_type", SUBMITTED),
        ("ce_time", now.encode()),
        ("content-type", b"application/json"),
    ]
    return need["submission_id"].encode(), json.dumps(need).encode(), headers


@dataclass
class Published:
    """What the generator sent: how many, and when (wall clock, like Kafka timestamps)."""

    count: int = 0
    started: float = 0.0
    finished: float = 0.0
    wall_times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Time from the first send to the last acknowledgement."""
        return max(0.0, self.finished - self.started)


def producer(bootstrap: str, *, linger_ms: int) -> AIOKafkaProducer:
    """acks=all like the services; a larger batch for backlogs."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms, max_batch_size=256 * 1024
    )


async def publish_backlog(
    bootstrap: str,
    count: int,
    *,
    topic: str = topics.INTAKE_NEEDS,
    message: Callable[[], tuple[bytes, bytes, list[tuple[str, bytes]]]] = need_message,
) -> Published:
    """Send `count` messages as fast as the producer takes them and wait for every ack."""
    sender = producer(bootstrap, linger_ms=20)
    await sender.start()
    published = Published(started=time.time())
    try:
        futures = []
        for _ in range(count):
            key, value, headers = message()
            futures.append(await sender.send(topic, key=key, value=value, headers=headers))
            published.wall_times.append(time.time())
        await asyncio.gather(*futures)
    finally:
        await sender.stop()
    published.count = count
    published.finished = time.time()
    return published


async def publish_at_rate(
    bootstrap: str, rate: float, duration: float, *, tick: float = 0.01
) -> Published:
    """Send needs at `rate` per second for `duration` seconds (every `tick`, what is due).

    The producer lingers 2 ms: a need is on the broker within milliseconds of its `ce_time`.
    If the generator falls behind (a loaded machine), it sends what is due at once, and the
    report shows the rate it really reached.
    """
    sender = producer(bootstrap, linger_ms=2)
    await sender.start()
    total = round(rate * duration)
    published = Published(started=time.time())
    futures = []
    try:
        while published.count < total:
            due = min(total, int((time.time() - published.started) * rate) + 1)
            while published.count < due:
                key, value, headers = need_message()
                futures.append(
                    await sender.send(topics.INTAKE_NEEDS, key=key, value=value, headers=headers)
                )
                published.wall_times.append(time.time())
                published.count += 1
            next_due = published.started + published.count / rate
            await asyncio.sleep(max(0.0, min(tick, next_due - time.time())))
        await asyncio.gather(*futures)
    finally:
        await sender.stop()
    published.finished = time.time()
    return published
