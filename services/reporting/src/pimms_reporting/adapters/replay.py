"""The rebuild: every topic the projection reads, from its start, through the same pipeline."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from pimms_servicekit.kafka import consumer_from_start, ensure_topics
from pimms_servicekit.logging import get_logger
from pimms_servicekit.runtime import ServiceRuntime

log = get_logger("pimms.reporting.replay")


async def replay_from_start(runtime: ServiceRuntime[Any], *, idle_seconds: float = 3.0) -> int:
    """Feed every record of the runtime's topics, from offset 0, to its pipeline; stop when each
    partition is read to its end (or nothing came for `idle_seconds`). Return how many."""
    settings = runtime.settings
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        runtime.all_topics(),
        partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_replication_factor,
    )
    consumer = await consumer_from_start(settings.kafka_bootstrap_servers, runtime.pipeline.topics)
    total = 0
    try:
        quiet_since = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.batch_max_records)
            for records in batches.values():
                await runtime.pipeline.process(records)
                total += len(records)
            if any(batches.values()):
                quiet_since = time.monotonic()
            if await _read_to_end(consumer):
                break
            if time.monotonic() - quiet_since > idle_seconds:
                break
    finally:
        await consumer.stop()
    await runtime.kafka_sender.start()
    try:
        await runtime.relay.drain()  # dead letters of messages never seen before
    finally:
        await runtime.kafka_sender.stop()
    log.info("reporting.replayed", records=total)
    return total


async def _read_to_end(consumer: AIOKafkaConsumer) -> bool:
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        if highwater is None or await consumer.position(partition) < highwater:
            return False
    return True
