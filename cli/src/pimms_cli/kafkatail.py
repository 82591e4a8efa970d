"""Reading whole topics from the beginning without a consumer group, and producing to them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pimms_servicekit.kafka import consumer_from_start


@dataclass
class Seen:
    """One record read from a topic."""

    topic: str
    key: str | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def ce_type(self) -> str | None:
        """The CloudEvents type, when the record has one."""
        return self.headers.get("ce_type")

    def json(self) -> Any:
        """The value as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.value or b"")
        except ValueError:
            return None


class KafkaTail:
    """Collects every record of some topics, from their beginning, in the background."""

    def __init__(self, bootstrap_servers: str, topics: list[str]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.records: list[Seen] = []
        self.changed = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition and read from the start."""
        consumer = await consumer_from_start(self.bootstrap_servers, self.topics)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=2000)
            for records in batches.values():
                for r in records:
                    self.records.append(
                        Seen(
                            topic=r.topic,
                            key=r.key.decode(errors="replace") if r.key is not None else None,
                            value=r.value,
                            headers={k: (v or b"").decode(errors="replace") for k, v in r.headers},
                        )
                    )
            if batches:
                self.changed.set()

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


class Producer:
    """Sends records and waits for their acknowledgement."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")

    async def start(self) -> None:
        """Connect."""
        await self._producer.start()

    async def stop(self) -> None:
        """Disconnect."""
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        *,
        key: str | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send one record and wait for the broker."""
        await self._producer.send_and_wait(
            topic, value=value, key=key.encode() if key is not None else None, headers=headers or []
        )
