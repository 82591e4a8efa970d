"""`pimms_consumer_lag` follows the partitions the consumer has: after a rebalance, the partitions
another instance now reads leave the service's metrics instead of showing a frozen lag."""

from __future__ import annotations

from aiokafka.structs import TopicPartition
from pimms_servicekit.http import render
from pimms_servicekit.metrics import Metrics
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
