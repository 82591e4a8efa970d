"""`pimms dev --instances 2` on PostgreSQL: two instances of each service in one consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from pimms_cli.config import SERVICES, platform_services
from pimms_cli.probes import fetch
from pimms_servicekit.testing import KafkaEndpoint, fresh_postgres_database

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.timeout(900),
]

ASYNCAPI = Path(__file__).resolve().parents[3] / "contracts" / "asyncapi"


def partitions_read(service: str) -> int:
    """Partitions of the Kafka topics the service reads (its AsyncAPI document; 4 per topic)."""
    doc = json.loads((ASYNCAPI / f"{service}.json").read_text(encoding="utf-8"))
    kafka_reads = [
        op
        for op in doc["operations"].values()
        if op["action"] == "receive"
        and "kafka" in doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]].get("bindings", {})
    ]
    return 4 * len(kafka_reads)


def children(pid: int) -> list[int]:
    """The processes `pid` started (the service instances of a `pimms dev`)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def _partitions(port: int) -> int:
    status, body = await fetch(f"http://127.0.0.1:{port}/health/ready", timeout=3)
    if status == 0:
        return -1
    return int(json.loads(body)["checks"]["consumer"]["partitions"])


async def test_two_instances_of_each_service_share_its_consumer_group_and_stop_drained(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.endswith(("DATABASE_URL", "HTTP_PORT"))}
        for spec in platform_services():
            url = await stack.enter_async_context(fresh_postgres_database())
            env[f"{spec.env_prefix}DATABASE_URL"] = url
        env.update(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers, PIMMS_DATA_DIR=str(tmp_path))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pimms_cli.main",
            "dev",
            "--instances",
            "2",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        assert process.stdout is not None
        lines: list[str] = []
        try:
            while not any(line.startswith("platform ready") for line in lines):
                line = await asyncio.wait_for(process.stdout.readline(), timeout=300)
                assert line, "pimms dev exited:\n" + "\n".join(lines[-30:])
                lines.append(line.decode().rstrip("\n"))
            ports: dict[str, int] = {}
            for line in lines:
                found = re.match(r"^(\S+-\d)\s+\| http: http://127\.0\.0\.1:(\d+) ", line)
                if found:
                    ports[found.group(1)] = int(found.group(2))
            expected = {f"{s.name}-{n}" for s in platform_services() for n in (1, 2)}
            assert set(ports) == expected, "\n".join(lines)
            # every instance on its own port
            assert len(set(ports.values())) == 2 * len(platform_services())
            for name in expected:
                assert (tmp_path / "logs" / f"{name}.log").exists()

            deadline = time.monotonic() + 180
            shares: dict[str, list[int]] = {}
            while time.monotonic() < deadline:
                shares = {
                    spec.name: [await _partitions(ports[f"{spec.name}-{n}"]) for n in (1, 2)]
                    for spec in SERVICES
                }
                if all(
                    min(share) > 0 and sum(share) == partitions_read(name)
                    for name, share in shares.items()
                ):
                    break
                await asyncio.sleep(1)
            else:
                pytest.fail(f"partitions never shared by both instances of each service: {shares}")
        finally:
            services = children(process.pid)
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            try:
                rest, _ = await asyncio.wait_for(process.communicate(), timeout=180)
            except TimeoutError:
                for pid in [process.pid, *services]:  # never leave services behind
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                raise
            lines += rest.decode().splitlines()
    printed = [line for line in lines if "| {" not in line]
    assert process.returncode == 0, "\n".join(printed[-30:])
    assert "drained: nothing in flight; stopping" in printed, "\n".join(printed[-30:])
