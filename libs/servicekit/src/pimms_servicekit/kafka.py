"""Kafka adapters: the faststream broker, the relay's producer, explicit topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage

from pimms_servicekit.logging import bound_context, get_logger
from pimms_servicekit.outbox import Outgoing
from pimms_servicekit.settings import ServiceSettings

log = get_logger("pimms.kafka")


class LogContextMiddleware(BaseMiddleware):
    """Binds what faststream hands over to every log line written while it is processed.

    A single message binds its event id and correlation id; a batch binds its position and
    size (the pipeline then binds case_id, correlation_id and event id per message of the batch,
    which a middleware cannot do: it sees the batch as one message).
    """

    async def consume_scope(
        self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        """Bind, process, unbind."""
        raw = msg.raw_message
        records = raw if isinstance(raw, tuple | list) else (raw,)
        if not records:
            return await call_next(msg)
        first = records[0]
        bindings: dict[str, Any] = {
            "kafka_batch": f"{first.topic}/{first.partition}@{first.offset}",
            "batch_size": len(records),
        }
        if len(records) == 1:
            headers = dict(first.headers or ())
            bindings["event_id"] = _text(headers.get("ce_id"))
            bindings["correlation_id"] = _text(headers.get("ce_correlationid"))
        with bound_context(**bindings):
            return await call_next(msg)


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value else None


class _TopicsAreOurs(logging.Filter):
    """We create topics explicitly at start: faststream's reminder that it does not is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Auto create topics is disabled" not in record.getMessage()


def make_broker(settings: ServiceSettings, *, client_id: str) -> KafkaBroker:
    """The service's faststream broker (consumers); per-message chatter at DEBUG."""
    logger = logging.getLogger(f"pimms.{client_id}.faststream")
    logger.addFilter(_TopicsAreOurs())
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        enable_idempotence=settings.kafka_enable_idempotence,
        acks="all",
        request_timeout_ms=settings.kafka_request_timeout_ms,
        logger=logger,
        log_level=logging.DEBUG,
        graceful_timeout=30.0,
        allow_auto_create_topics=False,
        middlewares=[LogContextMiddleware],
    )


def subscriber_options(settings: ServiceSettings) -> dict[str, Any]:
    """Consumer settings every service uses: from the start of a topic, tuned by settings."""
    return {
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "fetch_max_bytes": settings.kafka_fetch_max_bytes,
        "max_partition_fetch_bytes": settings.kafka_fetch_max_bytes,
        "max_records": settings.batch_max_records,
        "batch_timeout_ms": settings.batch_timeout_ms,
        "max_poll_interval_ms": 10 * 60 * 1000,
    }


class PromptBatchSubscriber(BatchSubscriber):
    """faststream's batch subscriber, without the sleep after an empty poll.

    faststream's own waits up to `batch_timeout_ms` for a first record, then, when none came,
    sleeps as long again before it polls: a record arriving meanwhile waits out the sleep, so the
    timeout had to stay short (5 ms), and an idle service woke about 200 times a second for
    nothing (a twentieth of a core per service, a quarter of the machine's idle CPU with Tansu).
    aiokafka's `getmany` returns as soon as a record is fetched, so here the wait can be long:
    a record is taken the moment it arrives, and an idle consumer wakes once per wait.
    """

    __slots__ = ()

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[Any, ...]:
        """The records fetched, as soon as there are any (none after `batch_timeout_ms`)."""
        batches = await consumer.getmany(
            timeout_ms=self.batch_timeout_ms, max_records=self.max_records
        )
        return tuple(record for records in batches.values() for record in records)

    @classmethod
    def adopt(cls, subscriber: Any) -> None:
        """Make faststream's batch subscriber this one (the same slots: only `get_msg` differs).

        faststream builds its subscribers in a factory with no hook for the class to use."""
        if type(subscriber) is not BatchSubscriber:
            raise TypeError(f"expected faststream's BatchSubscriber, got {type(subscriber)!r}")
        subscriber.__class__ = cls


class KafkaSender:
    """The relay's producer: acks=all, idempotence as configured (Tansu refuses it)."""

    def __init__(self, settings: ServiceSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect (retrying until the broker answers)."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            client_id=f"{self._client_id}-relay",
            acks="all",
            enable_idempotence=self._settings.kafka_enable_idempotence,
            linger_ms=2,
            max_batch_size=512 * 1024,
            request_timeout_ms=30_000,
        )
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, messages: Sequence[Outgoing]) -> tuple[int, BaseException | None]:
        """Send everything, wait for every ack; the delivered prefix and the first error."""
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        futures = []
        try:
            for message in messages:
                futures.append(
                    await self._producer.send(
                        message.topic,
                        value=message.value,
                        key=message.key,
                        headers=list(message.headers),
                    )
                )
        except KafkaError as exc:
            results = await asyncio.gather(*futures, return_exceptions=True)
            return _prefix(results, exc)
        results = await asyncio.gather(*futures, return_exceptions=True)
        return _prefix(results, None)


def _prefix(results: Sequence[Any], late: BaseException | None) -> tuple[int, BaseException | None]:
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            return index, result
    return len(results), late


class BrokerSender:
    """Publishes through a faststream broker: for wiring tests on TestKafkaBroker."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(self, messages: Sequence[Outgoing]) -> tuple[int, BaseException | None]:
        """Publish one by one."""
        for index, message in enumerate(messages):
            try:
                await self._broker.publish(
                    message.value,
                    message.topic,
                    key=message.key,
                    headers={name: value.decode() for name, value in message.headers},
                )
            except Exception as exc:
                return index, exc
        return len(messages), None


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int,
    replication_factor: int = 1,
    attempts: int = 60,
) -> None:
    """Create the topics that do not exist yet (explicitly: never rely on auto-creation)."""
    wanted = sorted(set(topics))
    admin = await _admin(bootstrap_servers, attempts=attempts)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(t, partitions, replication_factor) for t in missing]
            )
            for topic, code, *_ in getattr(response, "topic_errors", ()):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"could not create topic {topic}: error code {code}")
            log.info("kafka.topics_created", topics=missing)
    finally:
        await admin.close()


async def _admin(bootstrap_servers: str, *, attempts: int) -> AIOKafkaAdminClient:
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
        try:
            await admin.start()
            return admin
        except (KafkaConnectionError, KafkaError, OSError):
            await admin.close()
            if attempt == attempts - 1:
                raise
            if attempt == 0:
                log.info("kafka.waiting_for_broker", bootstrap_servers=bootstrap_servers)
            await asyncio.sleep(1.0)
    raise RuntimeError("unreachable")  # pragma: no cover


async def broker_reachable(bootstrap_servers: str, *, timeout: float = 3.0) -> bool:
    """True when a Kafka broker answers at this address."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=timeout)
        await asyncio.wait_for(admin.list_topics(), timeout=timeout)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):  # closing a client that never connected
            await admin.close()


async def consumer_from_start(bootstrap_servers: str, topics: Sequence[str]) -> AIOKafkaConsumer:
    """A consumer without a group, on every partition of `topics`, from their beginning.

    For tools and tests that read whole topics (the demo, assertions). A topic created a moment
    ago may not be in the metadata yet: it is asked for again, for up to five seconds.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    partitions: list[TopicPartition] = []
    for topic in topics:
        found: set[int] | None = None
        for _ in range(50):
            found = consumer.partitions_for_topic(topic)
            if found:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        partitions += [TopicPartition(topic, p) for p in sorted(found or {0})]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer
