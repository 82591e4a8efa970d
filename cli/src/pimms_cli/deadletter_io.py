"""Reading dead letters and replay records from Kafka, and publishing replays."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pimms_servicekit.kafka import consumer_from_start, ensure_topics

from pimms_cli.deadletters import (
    DLT_SUFFIX,
    REPLAYS_TOPIC,
    DeadLetter,
    DltId,
    Replay,
    replay_of,
)


async def existing_topics(bootstrap_servers: str) -> set[str]:
    """The topics the broker knows."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers)
    await consumer.start()
    try:
        found: set[str] = await consumer.topics()
        return found
    finally:
        await consumer.stop()


async def read_whole(
    bootstrap_servers: str, topics: Sequence[str], *, timeout: float = 30.0
) -> list[Any]:
    """Every record of `topics` (that exist), from their start to their end now."""
    if not topics:
        return []
    consumer = await consumer_from_start(bootstrap_servers, topics)
    records: list[Any] = []
    try:
        partitions = list(consumer.assignment())
        try:
            ends: dict[TopicPartition, int] | None = await asyncio.wait_for(
                consumer.end_offsets(partitions), timeout=5
            )
        except Exception:  # brokers without end offsets: read until nothing comes for a while
            ends = None
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline:
            if ends is not None and await _caught_up(consumer, ends):
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for batch in batches.values():
                records.extend(batch)
            idle = 0 if batches else idle + 1
            if ends is None and idle >= 5:
                break
    finally:
        await consumer.stop()
    return records


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


def _letter(record: Any) -> DeadLetter:
    return DeadLetter(
        id=DltId(record.topic, record.partition, record.offset),
        key=record.key,
        value=record.value,
        headers=tuple((k, v or b"") for k, v in record.headers),
        timestamp_ms=record.timestamp,
    )


async def read_dead_letters(bootstrap_servers: str, *, only: str | None = None) -> list[DeadLetter]:
    """Every dead letter of every `*.dlt` topic (of one when `only` names it)."""
    known = await existing_topics(bootstrap_servers)
    wanted = sorted(t for t in known if t.endswith(DLT_SUFFIX) and only in (None, t))
    return [_letter(r) for r in await read_whole(bootstrap_servers, wanted)]


async def read_replays(bootstrap_servers: str) -> list[Replay]:
    """Every replay recorded on `pimms.ops.replays.v1` (none when the topic does not exist)."""
    if REPLAYS_TOPIC not in await existing_topics(bootstrap_servers):
        return []
    records = await read_whole(bootstrap_servers, [REPLAYS_TOPIC])
    return [r for r in (Replay.from_json(x.value) for x in records) if r is not None]


async def fetch(
    bootstrap_servers: str, ids: Sequence[DltId], *, timeout: float = 10.0
) -> dict[DltId, DeadLetter]:
    """The dead letters at these positions (those that exist)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    found: dict[DltId, DeadLetter] = {}
    try:
        known = await consumer.topics()
        for wanted in ids:
            if wanted.topic not in known:
                continue
            if wanted.partition not in (consumer.partitions_for_topic(wanted.topic) or set()):
                continue
            partition = TopicPartition(wanted.topic, wanted.partition)
            consumer.assign([partition])
            end: int | None = None
            with contextlib.suppress(Exception):  # brokers without end offsets: read and see
                end = (await consumer.end_offsets([partition]))[partition]
            if end is not None and wanted.offset >= end:
                continue
            consumer.seek(partition, wanted.offset)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = (await consumer.getmany(partition, timeout_ms=200)).get(partition, [])
                hit = next((r for r in batch if r.offset >= wanted.offset), None)
                if hit is not None:
                    if hit.offset == wanted.offset:
                        found[wanted] = _letter(hit)
                    break
    finally:
        await consumer.stop()
    return found


async def publish_replays(
    bootstrap_servers: str,
    letters: Sequence[DeadLetter],
    *,
    at: datetime,
    case_ids: dict[str, str] | None = None,
) -> list[Replay]:
    """Re-publish each dead letter to its original topic, marked, and record each replay."""
    await ensure_topics(bootstrap_servers, [REPLAYS_TOPIC], partitions=1, attempts=5)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    done: list[Replay] = []
    try:
        for letter in letters:
            await producer.send_and_wait(
                letter.original_topic,
                key=letter.key,
                value=letter.value,
                headers=letter.replay_headers(at=at),
            )
            replay = replay_of(letter, at=at, case_id=(case_ids or {}).get(letter.key_text or ""))
            await producer.send_and_wait(
                REPLAYS_TOPIC, key=str(letter.id).encode(), value=replay.to_json()
            )
            done.append(replay)
    finally:
        await producer.stop()
    return done
