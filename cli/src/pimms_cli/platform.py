"""The whole platform on one machine: the embedded broker (or a given one) and the services.

Each service instance is a separate process. Its JSON log lines go to the terminal, prefixed with
its name, and to `<data dir>/logs/<service>.log` (`<service>-<n>.log` with several instances).
Stopping can first let the services drain (outboxes published, consumers caught up) for a bounded
time; then it sends SIGTERM to every service (they finish or hand back their in-flight batch),
waits, then stops the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pimms_contracts.partners import load_directory
from pimms_contracts.topics import platform_topics
from pimms_servicekit.health import heartbeat_path, is_alive
from pimms_servicekit.kafka import broker_reachable, ensure_topics
from pimms_servicekit.settings import HTTP_PORTS
from pimms_servicekit.tansu import TansuBroker, free_port, port_open

from pimms_cli.config import (
    DEFAULT_BOOTSTRAP,
    SERVICES,
    ServiceSpec,
    gateway_directory_path,
    is_postgresql,
    platform_services,
)
from pimms_cli.probes import InFlight, fetch, platform_in_flight

DEV_KAFKA_TIMINGS = {
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "KAFKA_FETCH_MAX_WAIT_MS": "50",  # Tansu does not wake a long poll: this bounds latency per hop
}

HTTP_HOST = "127.0.0.1"


@dataclass
class _Running:
    spec: ServiceSpec
    name: str
    number: int
    process: asyncio.subprocess.Process
    log: IO[str]
    http_port: int | None = None
    pump: asyncio.Task[None] | None = None
    restarts: int = 0


@dataclass
class Platform:
    """Broker + services, started and stopped together."""

    data_dir: Path
    bootstrap: str | None = None
    echo: bool = True
    prefer_port: int = 9092
    database_urls: dict[str, str] = field(default_factory=dict)
    instances: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    services: tuple[ServiceSpec, ...] = field(default_factory=platform_services)
    broker: TansuBroker | None = None
    running: dict[str, _Running] = field(default_factory=dict)
    stopping: bool = False
    _ports: dict[str, int] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        """Where the services' Kafka is."""
        if self.broker is not None:
            return self.broker.bootstrap_servers
        return self.bootstrap or DEFAULT_BOOTSTRAP

    def instance_names(self, spec: ServiceSpec) -> list[str]:
        """`intake` alone, or `intake-1`, `intake-2`... with several instances."""
        if self.instances == 1:
            return [spec.name]
        return [f"{spec.name}-{n}" for n in range(1, self.instances + 1)]

    def check_instances(self) -> None:
        """Several instances share one database: refuse (RuntimeError) unless it is PostgreSQL."""
        if self.instances < 1:
            raise RuntimeError("--instances must be at least 1")
        if self.instances == 1:
            return
        on_sqlite = [
            spec.name for spec in self.services if not is_postgresql(self._database_url(spec))
        ]
        if on_sqlite:
            variables = ", ".join(f"{s.env_prefix}DATABASE_URL" for s in self.services)
            raise RuntimeError(
                "several instances need PostgreSQL: set the PIMMS_*_DATABASE_URL variables "
                f"({variables}); on SQLite now: {', '.join(on_sqlite)}"
            )

    async def start(self) -> None:
        """Start the broker (unless one was given), create the topics, start every service."""
        self.check_instances()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.bootstrap is None:
            port = self.prefer_port if not port_open("127.0.0.1", self.prefer_port) else free_port()
            self.broker = TansuBroker(
                port=port, log_file=self.data_dir / "logs" / "broker.log"
            ).start()
            self._say(
                "broker", f"embedded Tansu broker listening on {self.broker.bootstrap_servers}"
            )
        elif not await broker_reachable(self.bootstrap):
            raise RuntimeError(
                f"no Kafka broker answers at KAFKA_BOOTSTRAP_SERVERS={self.bootstrap}"
            )
        else:
            self._say("broker", f"using the Kafka broker at {self.bootstrap}")
        # the topics of the partners the gateway will read (the services' own directory file)
        directory = load_directory(gateway_directory_path({**os.environ, **self.extra_env}))
        await ensure_topics(
            self.bootstrap_servers,
            platform_topics(directory.kafka_partner_ids()),
            partitions=int(os.environ.get("KAFKA_TOPIC_PARTITIONS", "4")),
            replication_factor=int(os.environ.get("KAFKA_REPLICATION_FACTOR", "1")),
        )
        if self.instances > 1:
            # Each instance listens on its own port, known before it starts.
            for spec in self.services:
                for name in self.instance_names(spec):
                    self._ports[name] = free_port()
        else:
            # A default port someone else holds (another platform here): take a free one.
            for spec in self.services:
                default = HTTP_PORTS.get(spec.name)
                chosen = spec.http_port_env in os.environ or spec.http_port_env in self.extra_env
                if default and not chosen and port_open(HTTP_HOST, default):
                    self._ports[spec.name] = free_port()
        for spec in self.services:
            for number, name in enumerate(self.instance_names(spec), start=1):
                await self._spawn(spec, name=name, number=number)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every instance beats (migrated, subscribed, relaying) and answers HTTP."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, running in self.running.items():
                if running.process.returncode is not None:
                    raise RuntimeError(
                        f"{name} exited with code {running.process.returncode} at start; "
                        f"see {self.data_dir / 'logs' / (name + '.log')}"
                    )
            if all(is_alive(self.data_dir, spec.name) for spec in self.services):
                waiting = [n for n, r in self.running.items() if not await self._answers(r)]
                if not waiting:
                    return
            await asyncio.sleep(0.2)
        missing = [n for n, r in self.running.items() if not await self._answers(r)]
        raise RuntimeError(f"services not ready after {timeout:.0f}s: {', '.join(missing)}")

    def http_endpoints(self) -> list[tuple[str, str]]:
        """(instance name, `http://127.0.0.1:<port>`) of every instance whose port is known."""
        for running in self.running.values():
            if running.http_port is None:
                running.http_port = _heartbeat_port(self.data_dir, running.spec.name)
        return [
            (name, f"http://{HTTP_HOST}:{running.http_port}")
            for name, running in self.running.items()
            if running.http_port is not None
        ]

    def describe_ports(self) -> list[str]:
        """One line per instance: its name and where its health and metrics are."""
        width = self._width()
        paths = "/health/live, /health/ready, /metrics"
        return [
            f"{name:<{width}} | http: {url} ({paths}"
            + (", /partners/<id>/responses" if name.startswith("partner-gateways") else "")
            + ")"
            for name, url in self.http_endpoints()
        ]

    async def supervise(self) -> None:
        """Run until stopped; an instance that dies is started again (with a pause)."""
        while not self.stopping:
            await asyncio.sleep(0.5)
            for name, running in list(self.running.items()):
                code = running.process.returncode
                if code is not None and not self.stopping:
                    self._say(name, f"exited with code {code}; starting it again in 2 s")
                    await asyncio.sleep(2)
                    if not self.stopping:
                        restarts = running.restarts + 1
                        await self._spawn(running.spec, name=name, number=running.number)
                        self.running[name].restarts = restarts

    async def in_flight(self) -> InFlight:
        """What the running instances still have to publish, consume or deliver."""
        return await platform_in_flight(self.http_endpoints())

    async def drain(self, timeout: float, *, interval: float = 0.5) -> InFlight:
        """Let the services finish their work for at most `timeout` seconds; return what is left.

        Drained means every outbox empty, every consumer group caught up and every effect
        delivered, seen twice in a row (a message between a relay and a consumer is in neither).
        """
        deadline = time.monotonic() + timeout
        left = await self.in_flight()
        quiet = 0
        if not left.drained:
            self._say("platform", f"draining: {left.describe()} in flight")
        while time.monotonic() < deadline:
            quiet = quiet + 1 if left.drained else 0
            if quiet >= 2:
                return left
            await asyncio.sleep(interval)
            left = await self.in_flight()
        return left

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every service, wait for them, then stop the broker."""
        self.stopping = True
        for running in self.running.values():
            if running.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    running.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, running in self.running.items():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(running.process.wait(), timeout=remaining)
            except TimeoutError:
                self._say(name, "did not stop in time; killing it")
                with contextlib.suppress(ProcessLookupError):
                    running.process.kill()
                await running.process.wait()
            if running.pump is not None:
                with contextlib.suppress(Exception):
                    await running.pump
            running.log.close()
        if self.broker is not None:
            self.broker.stop()
            self._say("broker", "stopped (the embedded broker keeps nothing)")

    async def kill(self, name: str) -> None:
        """SIGKILL one instance (fault tests): no chance to finish anything."""
        running = self.running[name]
        with contextlib.suppress(ProcessLookupError):
            running.process.kill()
        await running.process.wait()
        if running.pump is not None:
            with contextlib.suppress(Exception):
                await running.pump
        running.log.close()

    async def restart(self, name: str) -> None:
        """Start one instance again (`intake`, or `intake-2` with several instances)."""
        if name in self.running:
            running = self.running[name]
            await self._spawn(running.spec, name=name, number=running.number)
            return
        spec = next(s for s in self.services if s.name == name)
        await self._spawn(spec, name=name, number=1)

    def service_env(self, spec: ServiceSpec, *, name: str | None = None) -> dict[str, str]:
        """The environment of one service process."""
        env = dict(os.environ)
        # Services start from cached bytecode (with it off, each start compiles every module).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(self.extra_env)
        env.update(
            PIMMS_DATA_DIR=str(self.data_dir.resolve()),
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers,
            PYTHONUNBUFFERED="1",
        )
        if self.broker is not None:
            env["KAFKA_ENABLE_IDEMPOTENCE"] = "false"  # Tansu refuses idempotent producers
            for key, value in DEV_KAFKA_TIMINGS.items():
                env.setdefault(key, value)
        env[f"{spec.env_prefix}DATABASE_URL"] = self._database_url(spec)
        port = self._ports.get(name or spec.name)
        if port is not None:
            env[spec.http_port_env] = str(port)
        if self.instances > 1 and name is not None:
            env["PIMMS_INSTANCE"] = name
        return env

    def _database_url(self, spec: ServiceSpec) -> str:
        return self.database_urls.get(spec.name) or spec.database_url(self.data_dir)

    async def _answers(self, running: _Running) -> bool:
        if running.http_port is None:
            running.http_port = self._ports.get(running.name) or _heartbeat_port(
                self.data_dir, running.spec.name
            )
        if running.http_port is None:
            return False
        status, _ = await fetch(f"http://{HTTP_HOST}:{running.http_port}/health/live", timeout=1.0)
        return status == 200

    async def _spawn(self, spec: ServiceSpec, *, name: str, number: int) -> None:
        log = (self.data_dir / "logs" / f"{name}.log").open("a", encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            spec.module,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.service_env(spec, name=name),
            start_new_session=True,  # Ctrl-C reaches `pimms dev`, which stops the services in order
        )
        running = _Running(
            spec=spec,
            name=name,
            number=number,
            process=process,
            log=log,
            http_port=self._ports.get(name),
        )
        running.pump = asyncio.create_task(self._pump(running))
        self.running[name] = running

    async def _pump(self, running: _Running) -> None:
        assert running.process.stdout is not None
        width = self._width()
        while True:
            line = await running.process.stdout.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            running.log.write(text + "\n")
            running.log.flush()
            if self.echo:
                print(f"{running.name:<{width}} | {text}", flush=True)

    def _width(self) -> int:
        return max(len(n) for s in self.services for n in self.instance_names(s))

    def _say(self, who: str, what: str) -> None:
        if self.echo:
            print(f"{who:<{self._width()}} | {what}", flush=True)


def _heartbeat_port(data_dir: Path, service: str) -> int | None:
    """The HTTP port a service wrote in its heartbeat file (`http_port`), if any."""
    try:
        body = json.loads(heartbeat_path(data_dir, service).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    port = body.get("http_port") if isinstance(body, dict) else None
    return int(port) if isinstance(port, int) else None


def platform_is_running(data_dir: Path) -> bool:
    """True when every service of a platform using this data directory is alive."""
    return all(is_alive(data_dir, spec.name) for spec in SERVICES)
