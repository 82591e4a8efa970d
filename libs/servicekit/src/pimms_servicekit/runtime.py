"""The composition every service shares: database, pipeline, relay, broker, heartbeat, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pimms_servicekit.clock import Clock, ClockSettingError, clock_from_env, is_steered
from pimms_servicekit.db import Database, wait_for_database
from pimms_servicekit.dead_letters import DeadLetter
from pimms_servicekit.effects import Destination, EffectDispatcher
from pimms_servicekit.health import Heartbeat
from pimms_servicekit.hooks import Hooks
from pimms_servicekit.housekeeping import ExpiredHook, Housekeeper, retention_from_env
from pimms_servicekit.http import Endpoint, HttpServer, render
from pimms_servicekit.kafka import (
    BrokerSender,
    KafkaSender,
    PromptBatchSubscriber,
    ensure_topics,
    make_broker,
    subscriber_options,
)
from pimms_servicekit.logging import configure_logging, get_logger
from pimms_servicekit.metrics import Metrics
from pimms_servicekit.outbox import OutboxRelay, Outgoing, Sender
from pimms_servicekit.pipeline import BatchPipeline
from pimms_servicekit.progress import ProgressWatch, stall_after_from_env
from pimms_servicekit.routing import Decoder, Handlers
from pimms_servicekit.settings import ServiceSettings, SettingsError
from pimms_servicekit.tables import outbox
from pimms_servicekit.tracing import (
    TracingSender,
    configure_tracing,
    shutdown_tracing,
    tracing_enabled,
)
from pimms_servicekit.unit_of_work import UnitOfWork

# How long a stop waits for the work in progress: a unit of work, a dispatcher's round.
UNIT_OF_WORK_GRACE_S = 5.0
DISPATCH_GRACE_S = 10.0

log = get_logger("pimms.runtime")

Background = Callable[[], Awaitable[None]]

R = TypeVar("R")
T = TypeVar("T")


class ServiceRuntime(Generic[R]):
    """Everything a service runs on; the service adds what it reads, its effects' destinations
    and its background jobs."""

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        migrations_dir: Path,
        handlers: Handlers[R],
        repositories: Callable[[AsyncSession], R],
        hooks: Hooks[R] | None = None,
        clock: Clock | None = None,
        produces: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.service = settings.service_name
        self.migrations_dir = migrations_dir
        # Platform time: the real clock unless PIMMS_TIME_* steer it (pimms dev --time-scale).
        try:
            self.clock = clock or clock_from_env(os.environ)
        except ClockSettingError as exc:
            raise SettingsError(str(exc)) from None
        self.produces = list(produces)
        self.database = Database(settings.resolved_database_url())
        self.kafka_sender = KafkaSender(settings, client_id=f"pimms-{self.service}")
        self.hooks: Hooks[R] = hooks or Hooks()
        self.pipeline: BatchPipeline[R] = BatchPipeline(
            service=self.service,
            database=self.database,
            clock=self.clock,
            handlers=handlers,
            repositories=repositories,
            on_commit=self._committed,
        )
        self.pipeline.dead_letter_fallback = self._publish_dead_letter
        self.relay = OutboxRelay(
            database=self.database,
            sender=TracingSender(self.kafka_sender),
            clock=self.clock,
            source=f"urn:pimms:{self.service}",
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval_s,
            hooks=self.hooks,
            make_uow=self.pipeline.unit_of_work,
        )
        self.dispatchers: dict[str, EffectDispatcher] = {}
        self.metrics = Metrics(self.service)
        self.pipeline.metrics = self.metrics
        self.relay.on_published = self._published
        self.relay.on_committed = self._committed
        port, self._explicit_port = settings.resolved_http_port()
        self.http = HttpServer(
            host=settings.http_host,
            port=port,
            readiness=self.readiness,
            metrics=self._render_metrics,
        )
        self._subscriber: Any = None
        self.broker: KafkaBroker = make_broker(settings, client_id=f"pimms-{self.service}")
        self.heartbeat = Heartbeat(
            data_dir=settings.data_dir, service=self.service, details=self._details
        )
        self._background: list[tuple[str, Background]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatching: list[asyncio.Task[None]] = []
        self._subscribed = False
        # --- housekeeping (issue 6): purge old kit rows, dead-letter parked_too_long ----------
        self.on_parked_expired: ExpiredHook | None = None  # a service tells the mediator here
        self.housekeeper = Housekeeper(
            database=self.database,
            clock=self.clock,
            retention=retention_from_env(),
            in_unit_of_work=self.in_unit_of_work,
            on_parked_expired=lambda: self.on_parked_expired,
        )
        self.background("housekeeping", self.housekeeper.run)
        # --- end housekeeping -----------------------------------------------------------------
        # --- stalls are visible (issue 6): work without progress is logged, readiness false ---
        self.progress = ProgressWatch(
            lag=self._consumer_lag, stall_after=stall_after_from_env(os.environ)
        )
        self.background("progress", self.progress.run)
        self.background("full-collections", full_collections)

    def http_route(self, path: str, endpoint: Endpoint, *, methods: list[str]) -> None:
        """Serve one of the service's own endpoints on its HTTP server."""
        self.http.route(path, endpoint, methods=methods)

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """What `/health/ready` checks: each with `ok` and what was seen."""
        checks: dict[str, dict[str, Any]] = {}
        try:
            await asyncio.wait_for(self.database.ping(), timeout=2.0)
            checks["database"] = {"ok": True}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        checks["pipeline"] = {"ok": self.pipeline.retrier.healthy}
        checks["progress"] = self.progress.describe()
        checks["broker"] = {
            "ok": not self.relay.stats.failing,
            "error": self.relay.stats.last_error if self.relay.stats.failing else None,
        }
        consumer = getattr(self._subscriber, "consumer", None)
        assigned = len(consumer.assignment()) if consumer is not None else 0
        checks["consumer"] = {
            "ok": assigned > 0 or not self.pipeline.topics,
            "partitions": assigned,
        }
        backlog = await self._outbox_backlog()
        bound = self.settings.ready_max_outbox_backlog
        checks["outbox"] = {
            "ok": backlog is not None and backlog < bound,
            "backlog": backlog,
            "bound": bound,
        }
        self.metrics.ready.set(1 if all(c["ok"] for c in checks.values()) else 0)
        return checks

    async def _outbox_backlog(self) -> int | None:
        try:
            async with self.database.reading() as connection:
                row = (
                    await connection.execute(
                        select(func.count(), func.min(outbox.c.created_at)).where(
                            outbox.c.sent_at.is_(None)
                        )
                    )
                ).one()
        except Exception:
            return None
        backlog, oldest = int(row[0]), row[1]
        self.metrics.outbox_backlog.set(backlog)
        age = (self.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        self.metrics.outbox_age.set(max(age, 0.0))
        return backlog

    async def _render_metrics(self) -> bytes:
        await self._outbox_backlog()
        await self.metrics.read_consumer_lag(getattr(self._subscriber, "consumer", None))
        return render(self.metrics.registry)

    async def _consumer_lag(self) -> int | None:
        """Records between the consumer's positions and its partitions' ends (asked of the
        broker); None when the broker does not answer."""
        consumer = getattr(self._subscriber, "consumer", None)
        if consumer is None or not self.pipeline.topics:
            return 0
        partitions = list(consumer.assignment())
        try:
            if not partitions:  # joining a group, or lost it: is the broker there at all?
                await asyncio.wait_for(consumer.topics(), timeout=5.0)
                return 0
            ends = await asyncio.wait_for(consumer.end_offsets(partitions), timeout=5.0)
            positions = await asyncio.wait_for(
                asyncio.gather(*(consumer.position(tp) for tp in partitions)), timeout=5.0
            )
        except Exception:
            return None
        return sum(
            max(int(ends.get(tp, at)) - int(at), 0)
            for tp, at in zip(partitions, positions, strict=True)
        )

    def _published(self, messages: Sequence[Outgoing]) -> None:
        for message in messages:
            self.metrics.produced.labels(topic=message.topic).inc()

    def consume(self, topic: str, decoder: Decoder) -> None:
        """Read `topic` with `decoder`; its payloads go to the service's handlers."""
        self.pipeline.consume(topic, decoder)

    def deliver_to(self, destination: Destination, *, poll_interval: float | None = None) -> None:
        """Effects named for `destination` are delivered by its own dispatcher, after commit."""
        dispatcher = EffectDispatcher(
            destination=destination,
            database=self.database,
            clock=self.clock,
            hooks=self.hooks,
            make_uow=self.pipeline.unit_of_work,
            poll_interval=poll_interval or self.settings.relay_poll_interval_s,
        )
        dispatcher.on_committed = self._committed
        dispatcher.on_outcome = lambda name, outcome: self.metrics.effects.labels(
            destination=name, outcome=outcome
        ).inc()
        self.dispatchers[destination.name] = dispatcher

    async def in_unit_of_work(self, work: Callable[[UnitOfWork[R]], Awaitable[None]]) -> None:
        """Run `work` (a timer, a file watcher, an HTTP request) in its own unit of work.

        A stop does not cut it half-way (a query cancelled mid-flight spoils its pooled
        connection, and the stop then hangs on it): it gets `UNIT_OF_WORK_GRACE_S` to commit."""
        await finish_at_stop(self._unit_of_work(work), grace_s=UNIT_OF_WORK_GRACE_S)

    async def _unit_of_work(self, work: Callable[[UnitOfWork[R]], Awaitable[None]]) -> None:
        async with self.database.transaction() as session:
            uow = self.pipeline.unit_of_work(session)
            uow.begin_hook(case_id=None, correlation_id=None)
            try:
                await work(uow)
            finally:
                uow.end_message()
            await uow.flush()
        uow.committed()
        self._committed(uow)

    async def drain_effects(self) -> int:
        """Deliver every due effect now (tests, tools); return how many were attempted."""
        total = 0
        for dispatcher in self.dispatchers.values():
            while count := await dispatcher.deliver_due():
                total += count
        return total

    def _committed(self, uow: UnitOfWork[R]) -> None:
        """Wake the relay and the dispatchers that have new rows (no empty claims: each one is
        a transaction)."""
        if uow.outbox.flushed:
            self.relay.offer(uow.outbox.flushed)  # and wakes it
        for name in uow.effects.destinations:
            dispatcher = self.dispatchers.get(name)
            if dispatcher is not None:
                dispatcher.notify()

    async def _publish_dead_letter(self, record: DeadLetter) -> None:
        message = Outgoing(
            id=0,
            topic=record.topic,
            key=record.key,
            value=record.value,
            headers=list(record.headers),
        )
        delivered, error = await self.kafka_sender.send([message])
        if not delivered:
            log.error(
                "dead_letter.publish_failed", dlt_topic=record.topic, error=type(error).__name__
            )

    def background(self, name: str, job: Background) -> None:
        """A long-running job (timers, file watchers) started with the service."""
        self._background.append((name, job))

    def use_sender(self, sender: Sender) -> None:
        """Publish outbox rows through `sender` (wiring tests use the in-memory broker)."""
        self.relay.sender = sender

    def use_test_broker(self) -> None:
        """Publish through the faststream broker itself (for TestKafkaBroker)."""
        self.use_sender(BrokerSender(self.broker))

    async def prepare_database(self) -> None:
        """Wait for the database and migrate it."""
        await wait_for_database(self.database)
        await self.database.migrate(self.migrations_dir)

    def subscribe(self) -> None:
        """Attach the pipeline to the broker: one batch consumer for every routed topic."""
        if self._subscribed:
            return
        self._subscribed = True
        subscriber = self._subscriber = self.broker.subscriber(
            *self.pipeline.topics,
            group_id=f"pimms-{self.service}",
            batch=True,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            parser=_tolerant_parser,
            decoder=_raw_decoder,
            **subscriber_options(self.settings),
        )
        PromptBatchSubscriber.adopt(subscriber)

        # The handler takes the decoded body (the batch's records, see `_raw_decoder`), not a
        # `KafkaMessage` from faststream's context: a context parameter is resolved in a task
        # group and, its resolver being synchronous, on a worker thread, for every batch.
        async def consume(records: Any) -> None:
            self.progress.begin()
            try:
                await self.pipeline.process(records)
            finally:
                self.progress.end()

        subscriber(consume)

    def build_app(self) -> FastStream:
        """The FastStream application: migrate, create topics, consume, relay, stop cleanly."""
        self.subscribe()
        return FastStream(
            self.broker,
            on_startup=[self._on_startup],
            after_startup=[self._after_startup],
            on_shutdown=[self._on_shutdown],
            after_shutdown=[self._after_shutdown],
        )

    def all_topics(self) -> list[str]:
        """Every topic this service reads or writes, dead letters of what it reads included."""
        consumed = self.pipeline.topics
        return sorted({*consumed, *self.produces, *(f"{t}.dlt" for t in consumed)})

    async def _on_startup(self) -> None:
        if not tracing_enabled():
            configure_tracing(self.service)  # OTLP export only when OTEL_EXPORTER_OTLP_ENDPOINT
        if is_steered(self.clock):
            log.warning("clock.steered", **self.clock.describe())  # type: ignore[attr-defined]
        log.info(
            "service.starting",
            database=self.database.url.get_backend_name(),
            kafka=self.settings.kafka_bootstrap_servers,
        )
        await self.prepare_database()
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            self.all_topics(),
            partitions=self.settings.kafka_topic_partitions,
            replication_factor=self.settings.kafka_replication_factor,
        )
        await self.kafka_sender.start()

    async def _after_startup(self) -> None:
        self.relay.start()
        for name, dispatcher in self.dispatchers.items():
            self._dispatching.append(
                asyncio.create_task(_supervised(f"effects:{name}", dispatcher.run), name=name)
            )
        await self._start_http()
        self.heartbeat.start()
        for name, job in self._background:
            self._tasks.append(asyncio.create_task(_supervised(name, job), name=name))
        log.info("service.started", topics=self.pipeline.topics)

    async def _start_http(self) -> None:
        try:
            await self.http.start()
        except OSError as exc:
            if self._explicit_port:
                raise
            log.warning("http.default_port_taken", port=self.http.port, error=type(exc).__name__)
            self.http.port = 0
            await self.http.start()

    async def _on_shutdown(self) -> None:
        log.info("service.stopping")
        self.pipeline.stopping.set()
        # Dispatchers finish their round (what was delivered is recorded, not re-sent after the
        # lease); background jobs are cancelled, their unit of work in progress may commit.
        for dispatcher in self.dispatchers.values():
            dispatcher.request_stop()
        if self._dispatching:
            await asyncio.wait(self._dispatching, timeout=DISPATCH_GRACE_S)
        self._tasks.extend(self._dispatching)
        self._dispatching.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _after_shutdown(self) -> None:
        await self.http.stop()
        await self.relay.stop()
        await self.kafka_sender.stop()
        await self.heartbeat.stop()
        await self.database.dispose()
        shutdown_tracing()
        log.info("service.stopped")

    def _details(self) -> dict[str, Any]:
        return {
            "messages": self.pipeline.stats.messages,
            "dead_lettered": self.pipeline.stats.dead_lettered,
            "published": self.relay.stats.published,
            "relay_leader": self.relay.stats.leader,
            "pipeline_healthy": self.pipeline.retrier.healthy,
            "stalled": self.progress.stall.reason if self.progress.stall is not None else None,
            "http_port": self.http.bound_port,
            "effects": {name: dataclasses.asdict(d.stats) for name, d in self.dispatchers.items()},
        }


async def finish_at_stop(work: Awaitable[T], *, grace_s: float) -> T:
    """Await `work`; if cancelled meanwhile (a stop), give it `grace_s` to finish first, so that
    a query is never cut half-way (that spoils its pooled connection)."""
    current = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(current)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(current, timeout=grace_s)
        raise


async def _supervised(name: str, job: Background) -> None:
    """Run a background job; if it fails, start it again after a pause that grows while it keeps
    failing (an outage is logged once when it starts and once when it ends, not every round)."""
    failing_since: float | None = None
    delay = 2.0
    while True:
        started = time.monotonic()
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if time.monotonic() - started > 60:
                failing_since, delay = None, 2.0  # it ran a while: a new failure, not the same one
            if failing_since is None:
                failing_since = time.monotonic()
                log.error("background.failed", job=name, error=type(exc).__name__)
            else:
                delay = min(delay * 2, 30.0)
            await asyncio.sleep(delay)


async def _tolerant_parser(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """faststream decodes headers as UTF-8; a producer's bad header must not jam the partition."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        cleaned = tuple(
            dataclasses.replace(
                r,
                headers=[(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in r.headers],
            )
            for r in records
        )
        message = await original(cleaned)
        message.raw_message = records  # the exact bytes go on to dead letters
        return message


async def _raw_decoder(message: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """The batch's records as consumed: the pipeline decodes each itself (faststream must not
    parse the JSON), and a bad header's exact bytes go on to dead letters (`_tolerant_parser`)."""
    return message.raw_message


GC_THRESHOLD = (20_000, 10, 10)


def tune_gc(setting: str | None) -> tuple[int, int, int]:
    """Keep the cyclic garbage collector from costing a fifth of a service's CPU.

    A batch keeps hundreds of young objects alive while it is processed, so the default
    threshold (a collection every 700 allocations) traverses them again and again and promotes
    them, and every full collection walks the whole imported code base (pydantic schemas,
    SQLAlchemy metadata). Measured on a 20,000-need drain: 18-26 % of each service's CPU went to
    the collector. The objects created at start are frozen out of its sight and young
    collections run every 20,000 allocations (a few megabytes at most: memory still freed by
    reference counting is not concerned). `PIMMS_GC_THRESHOLD` ("700,10,10" restores Python's
    default) sets the three thresholds."""
    threshold = GC_THRESHOLD
    if setting:
        try:
            parts = tuple(int(part) for part in setting.split(","))
        except ValueError:
            parts = ()
        if len(parts) != 3 or min(parts) < 1:
            raise SettingsError(
                f"PIMMS_GC_THRESHOLD must be three positive integers such as 20000,10,10, "
                f"not {setting!r}"
            )
        threshold = (parts[0], parts[1], parts[2])
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)
    return threshold


FULL_COLLECTION_EVERY_S = 30.0


async def full_collections(every_s: float = FULL_COLLECTION_EVERY_S) -> None:
    """A full collection every `every_s` seconds. With the thresholds of `tune_gc` and the
    start-up objects frozen, Python's own full collections hardly ever run, so any reference
    cycle a batch leaves would hold its memory for the rest of a long backlog (the known ones
    are fixed; this bounds the others). A full collection walks the unfrozen objects only:
    a few milliseconds every half minute."""
    while True:
        await asyncio.sleep(every_s)
        gc.collect()


def run_service(
    create_app: Callable[[Any], FastStream], settings_class: type[ServiceSettings]
) -> None:
    """Entry point of a service process: settings, logs, then run until SIGINT or SIGTERM."""
    try:
        settings = settings_class.load()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(service=settings.service_name, level=settings.log_level)
    try:
        app = create_app(settings)
        tune_gc(os.environ.get("PIMMS_GC_THRESHOLD"))
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    profile_dir = os.environ.get("PIMMS_PROFILE_DIR")
    if not profile_dir:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(app.run())
        return
    # Benchmarks: a cProfile of the event loop's thread, written when the service stops.
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(app.run())
    finally:
        profiler.disable()
        profiler.dump_stats(Path(profile_dir) / f"{settings.service_name}.prof")
