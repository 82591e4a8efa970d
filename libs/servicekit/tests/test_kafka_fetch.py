"""A consumer behind a backlog holds about one fetch per partition in memory, not the backlog.

Records fetched wait in aiokafka's buffer until a batch takes them. Tansu ignores the
per-partition limit and answers up to the request's `fetch_max_bytes` for each partition (5 MB
per partition with aiokafka's default of 50 MB), so services behind a backlog grew by tens of
megabytes for records they would only reach later.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer
from pimms_servicekit.kafka import ensure_topics, subscriber_options
from pimms_servicekit.settings import ServiceSettings
from pimms_servicekit.testing import KafkaEndpoint, produce

RECORD = b"x" * 1_000
BACKLOG = 8_000  # about 8 MB in one partition

# Options of faststream's batch subscriber, not of aiokafka's consumer.
_FASTSTREAM_ONLY = {"max_records", "batch_timeout_ms"}


async def _held_after_one_poll(kafka: KafkaEndpoint, topic: str, **options: Any) -> int:
    """Bytes the consumer holds once it has taken one record and prefetched what it may."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"fetch-{uuid.uuid4()}",
        **options,
    )
    await consumer.start()
    try:
        gc.collect()
        tracemalloc.start()
        try:
            taken = await consumer.getmany(timeout_ms=10_000, max_records=1)
            assert sum(len(records) for records in taken.values()) == 1
            await asyncio.sleep(1.0)  # the next fetch, prefetched in the background
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return held
    finally:
        await consumer.stop()


async def test_a_consumer_behind_a_backlog_holds_about_one_fetch(kafka: KafkaEndpoint) -> None:
    topic = f"fetch-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap_servers, [topic], partitions=1)
    await produce(kafka.bootstrap_servers, [(topic, None, RECORD, [])] * BACKLOG)
    settings = ServiceSettings(kafka_bootstrap_servers=kafka.bootstrap_servers)
    options = {k: v for k, v in subscriber_options(settings).items() if k not in _FASTSTREAM_ONLY}
    assert options["fetch_max_bytes"] == 256 * 1024

    held = await _held_after_one_poll(kafka, topic, **options)
    fifty = 50 * 1024 * 1024  # aiokafka's default request limit, for the partition too
    unbounded = await _held_after_one_poll(
        kafka,
        topic,
        auto_offset_reset="earliest",
        fetch_max_bytes=fifty,
        max_partition_fetch_bytes=fifty,
    )

    assert held < 1024 * 1024, f"{held:,} bytes held for a 256 KB fetch limit"
    assert unbounded > 2 * held, f"{unbounded:,} bytes held with 50 MB: the limit is not the cause"
