"""The whole platform on one machine: the embedded broker (or a given one) and the four services.

Each service is a separate process. Its JSON log lines go to the terminal, prefixed with its name,
and to `<data dir>/logs/<service>.log`. Stopping sends SIGTERM to every service (they finish or
hand back their in-flight batch), waits, then stops the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pimms_contracts.partners import load_directory
from pimms_contracts.topics import platform_topics
from pimms_servicekit.health import is_alive
from pimms_servicekit.kafka import broker_reachable, ensure_topics
from pimms_servicekit.tansu import TansuBroker, free_port, port_open

from pimms_cli.config import DEFAULT_BOOTSTRAP, SERVICES, ServiceSpec

DEV_KAFKA_TIMINGS = {
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "KAFKA_FETCH_MAX_WAIT_MS": "50",  # Tansu does not wake a long poll: this bounds latency per hop
}


@dataclass
class _Running:
    spec: ServiceSpec
    process: asyncio.subprocess.Process
    log: IO[str]
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
    broker: TansuBroker | None = None
    running: dict[str, _Running] = field(default_factory=dict)
    stopping: bool = False

    @property
    def bootstrap_servers(self) -> str:
        """Where the services' Kafka is."""
        if self.broker is not None:
            return self.broker.bootstrap_servers
        return self.bootstrap or DEFAULT_BOOTSTRAP

    async def start(self) -> None:
        """Start the broker (unless one was given), create the topics, start every service."""
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
        directory = load_directory()
        await ensure_topics(
            self.bootstrap_servers,
            platform_topics(directory.kafka_partner_ids()),
            partitions=int(os.environ.get("KAFKA_TOPIC_PARTITIONS", "4")),
            replication_factor=int(os.environ.get("KAFKA_REPLICATION_FACTOR", "1")),
        )
        for spec in SERVICES:
            await self._spawn(spec)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every service beats (migrated, subscribed, relaying)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(is_alive(self.data_dir, spec.name) for spec in SERVICES):
                return
            for name, running in self.running.items():
                if running.process.returncode is not None:
                    raise RuntimeError(
                        f"{name} exited with code {running.process.returncode} at start; "
                        f"see {self.data_dir / 'logs' / (name + '.log')}"
                    )
            await asyncio.sleep(0.2)
        missing = [s.name for s in SERVICES if not is_alive(self.data_dir, s.name)]
        raise RuntimeError(f"services not ready after {timeout:.0f}s: {', '.join(missing)}")

    async def supervise(self) -> None:
        """Run until stopped; a service that dies is started again (with a pause)."""
        while not self.stopping:
            await asyncio.sleep(0.5)
            for name, running in list(self.running.items()):
                code = running.process.returncode
                if code is not None and not self.stopping:
                    self._say(name, f"exited with code {code}; starting it again in 2 s")
                    await asyncio.sleep(2)
                    if not self.stopping:
                        restarts = running.restarts + 1
                        await self._spawn(running.spec)
                        self.running[name].restarts = restarts

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
        """SIGKILL one service (fault tests): no chance to finish anything."""
        running = self.running[name]
        with contextlib.suppress(ProcessLookupError):
            running.process.kill()
        await running.process.wait()
        if running.pump is not None:
            with contextlib.suppress(Exception):
                await running.pump
        running.log.close()

    async def restart(self, name: str) -> None:
        """Start one service again."""
        spec = next(s for s in SERVICES if s.name == name)
        await self._spawn(spec)

    def service_env(self, spec: ServiceSpec) -> dict[str, str]:
        """The environment of one service process."""
        env = dict(os.environ)
        env.update(
            PIMMS_DATA_DIR=str(self.data_dir.resolve()),
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers,
            PYTHONUNBUFFERED="1",
        )
        if self.broker is not None:
            env["KAFKA_ENABLE_IDEMPOTENCE"] = "false"  # Tansu refuses idempotent producers
            for key, value in DEV_KAFKA_TIMINGS.items():
                env.setdefault(key, value)
        url = self.database_urls.get(spec.name) or spec.database_url(self.data_dir)
        env[f"{spec.env_prefix}DATABASE_URL"] = url
        return env

    async def _spawn(self, spec: ServiceSpec) -> None:
        log = (self.data_dir / "logs" / f"{spec.name}.log").open("a", encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            spec.module,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.service_env(spec),
            start_new_session=True,  # Ctrl-C reaches `pimms dev`, which stops the services in order
        )
        running = _Running(spec=spec, process=process, log=log)
        running.pump = asyncio.create_task(self._pump(running))
        self.running[spec.name] = running

    async def _pump(self, running: _Running) -> None:
        assert running.process.stdout is not None
        width = max(len(s.name) for s in SERVICES)
        while True:
            line = await running.process.stdout.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            running.log.write(text + "\n")
            running.log.flush()
            if self.echo:
                print(f"{running.spec.name:<{width}} | {text}", flush=True)

    def _say(self, who: str, what: str) -> None:
        if self.echo:
            width = max(len(s.name) for s in SERVICES)
            print(f"{who:<{width}} | {what}", flush=True)


def platform_is_running(data_dir: Path) -> bool:
    """True when every service of a platform using this data directory is alive."""
    return all(is_alive(data_dir, spec.name) for spec in SERVICES)
