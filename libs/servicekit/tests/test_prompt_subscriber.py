"""A service takes a record the moment it is fetched, and an idle service does not spin.

faststream's batch subscriber sleeps as long as its poll timeout after an empty poll, so a record
arriving meanwhile waited, and an idle service woke about 200 times a second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from pimms_servicekit.kafka import PromptBatchSubscriber, ensure_topics
from pimms_servicekit.routing import Handlers
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.settings import ServiceSettings
from pimms_servicekit.testing import KafkaEndpoint, produce


def _subscriber(topic: str = "t", *, timeout_ms: int, max_records: int = 500) -> Any:
    subscriber = KafkaBroker().subscriber(
        topic, batch=True, batch_timeout_ms=timeout_ms, max_records=max_records
    )
    PromptBatchSubscriber.adopt(subscriber)
    return subscriber


class _Consumer:
    """What `get_msg` asks of aiokafka's consumer: `getmany`, answered from a script."""

    def __init__(self, *answers: dict[TopicPartition, list[str]]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    async def getmany(self, **options: Any) -> dict[TopicPartition, list[str]]:
        self.calls.append(options)
        return self.answers.pop(0)


async def test_an_empty_poll_returns_at_once_without_sleeping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s after an empty poll")

    monkeypatch.setattr(anyio, "sleep", no_sleep)
    subscriber = _subscriber(timeout_ms=750, max_records=42)
    consumer = _Consumer({}, {})

    assert await subscriber.get_msg(consumer) == ()
    assert await subscriber.get_msg(consumer) == ()
    assert consumer.calls == [{"timeout_ms": 750, "max_records": 42}] * 2


async def test_a_poll_returns_every_partitions_records_in_order() -> None:
    subscriber = _subscriber(timeout_ms=750)
    consumer = _Consumer({TopicPartition("t", 0): ["a", "b"], TopicPartition("t", 3): ["c"]})

    assert await subscriber.get_msg(consumer) == ("a", "b", "c")


async def test_a_record_arriving_after_an_empty_poll_is_taken_when_it_arrives(
    kafka: KafkaEndpoint,
) -> None:
    """The consume loop polls again at once: faststream's slept 3 s more here."""
    topic = f"prompt-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap_servers, [topic], partitions=2)
    subscriber = _subscriber(topic, timeout_ms=3_000)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"prompt-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    produced_at = 0.0
    try:

        async def after_the_first_empty_poll() -> None:
            nonlocal produced_at
            await asyncio.sleep(3.3)
            await produce(kafka.bootstrap_servers, [(topic, b"k", b"the record", [])])
            produced_at = time.monotonic()

        producing = asyncio.create_task(after_the_first_empty_poll())
        polls = 0
        records: tuple[Any, ...] = ()
        while not records:  # faststream's consume loop
            records = await subscriber.get_msg(consumer)
            polls += 1
        taken_after = time.monotonic() - produced_at
        await producing
    finally:
        await consumer.stop()

    assert [r.value for r in records] == [b"the record"]
    assert polls == 2, "the record came in the poll after the first, empty one"
    assert taken_after < 1.5, f"taken {taken_after:.1f} s after it was published"


def test_every_service_consumes_through_the_prompt_subscriber(tmp_path: Path) -> None:
    runtime = ServiceRuntime(
        settings=ServiceSettings(data_dir=tmp_path),
        migrations_dir=tmp_path,
        handlers=Handlers(),
        repositories=dict,
    )
    runtime.pipeline.consume("pimms.test.v1", lambda incoming: None)
    runtime.subscribe()

    assert type(runtime._subscriber) is PromptBatchSubscriber
    assert runtime._subscriber.batch_timeout_ms == 500


def test_only_faststreams_batch_subscriber_is_adopted() -> None:
    single = KafkaBroker().subscriber("t")
    with pytest.raises(TypeError, match="BatchSubscriber"):
        PromptBatchSubscriber.adopt(single)
