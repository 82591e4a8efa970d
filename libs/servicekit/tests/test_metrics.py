"""`pimms_consumer_lag` follows the partitions the consumer has: after a rebalance, the partitions
another instance now reads leave the service's metrics instead of showing a frozen lag."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pimms_servicekit.http import render
from pimms_servicekit.kafka import ensure_topics
from pimms_servicekit.metrics import Metrics
from pimms_servicekit.testing import KafkaEndpoint, produce
from prometheus_client.parser import text_string_to_metric_families


class Consumer:
    """What the metrics read of aiokafka's consumer: its assignment, end offsets and positions."""

    def __init__(self) -> None:
        self.partitions: dict[TopicPartition, tuple[int | None, int]] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.partitions[tp][0]

    async def position(self, tp: TopicPartition) -> int:
        return self.partitions[tp][1]


def lags(metrics: Metrics) -> dict[tuple[str, str], float]:
    text = render(metrics.registry).decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "pimms_consumer_lag"]
    return {(s.labels["topic"], s.labels["partition"]): s.value for s in family.samples}


async def test_partitions_lost_in_a_rebalance_leave_the_consumer_lag() -> None:
    metrics = Metrics("test")
    consumer = Consumer()
    consumer.partitions = {
        TopicPartition("cases", 0): (10, 7),
        TopicPartition("cases", 1): (5, 5),
        TopicPartition("answers", 0): (3, 1),
    }
    await metrics.read_consumer_lag(consumer)
    assert lags(metrics) == {("cases", "0"): 3, ("cases", "1"): 0, ("answers", "0"): 2}

    # a second instance joined: this one keeps cases/1 and gets nothing new
    consumer.partitions = {TopicPartition("cases", 1): (9, 4)}
    await metrics.read_consumer_lag(consumer)
    assert lags(metrics) == {("cases", "1"): 5}

    # partitions come back; one has no end offset yet: it shows once it has
    consumer.partitions = {
        TopicPartition("cases", 1): (9, 9),
        TopicPartition("cases", 0): (None, 0),
    }
    await metrics.read_consumer_lag(consumer)
    assert lags(metrics) == {("cases", "1"): 0}
    consumer.partitions[TopicPartition("cases", 0)] = (12, 11)
    await metrics.read_consumer_lag(consumer)
    assert lags(metrics) == {("cases", "1"): 0, ("cases", "0"): 1}

    # the consumer is gone (the service is stopping): no lag is claimed for any partition
    await metrics.read_consumer_lag(None)
    assert lags(metrics) == {}


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_on_a_real_broker_a_rebalance_takes_the_lost_partitions_out_of_the_lag(
    kafka: KafkaEndpoint,
) -> None:
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap_servers, [topic], partitions=4, replication_factor=1)
    await produce(
        kafka.bootstrap_servers, [(topic, f"k{i}".encode(), b"{}", []) for i in range(40)]
    )
    group = f"pimms-lag-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "latest",  # nothing is read: the series are what matters here
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
    }
    first, second = AIOKafkaConsumer(topic, **options), AIOKafkaConsumer(topic, **options)
    metrics = Metrics("test")
    polling = [first]

    async def lag_of_first(partitions: int) -> dict[tuple[str, str], float]:
        """Poll both consumers until the first has `partitions` with known ends; its lags."""
        seen: dict[tuple[str, str], float] = {}
        for _ in range(600):
            for consumer in polling:
                await consumer.getmany(timeout_ms=100)
            mine = first.assignment()
            if len(mine) == partitions and all(first.highwater(tp) is not None for tp in mine):
                await metrics.read_consumer_lag(first)
                seen = lags(metrics)
                if len(seen) == partitions:
                    return seen
        raise AssertionError(f"never {partitions} partitions: {first.assignment()}, {seen}")

    await first.start()
    try:
        alone = await lag_of_first(4)
        assert set(alone) == {(topic, str(p)) for p in range(4)}
        await second.start()
        polling.append(second)
        try:
            shared = await lag_of_first(2)
            assert set(shared) == {(topic, str(tp.partition)) for tp in first.assignment()}
        finally:
            await second.stop()
    finally:
        await first.stop()
