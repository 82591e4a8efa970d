"""`/health/ready` of each service process turns false (503, `database` not ok) while its
PostgreSQL database refuses connections, and true again once it is back, as a monitoring system
probing the running platform sees it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from pimms_cli.config import SERVICES
from pimms_cli.probes import fetch
from pimms_servicekit.tansu import free_port
from pimms_servicekit.testing import POSTGRES_ADMIN_URL, KafkaEndpoint, fresh_postgres_database
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.timeout(600),
]


async def ready(port: int) -> tuple[int, dict[str, Any]]:
    status, body = await fetch(f"http://127.0.0.1:{port}/health/ready", timeout=5)
    return status, (json.loads(body) if status else {})


async def wait_until(port: int, wanted: int, *, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    status, seen = 0, {}
    while time.monotonic() < deadline:
        status, seen = await ready(port)
        if status == wanted:
            return seen
        await asyncio.sleep(0.5)
    raise AssertionError(f"/health/ready on {port} stayed {status}, not {wanted}: {seen}")


async def refuse_connections(database: str, *, refuse: bool) -> None:
    """The database stops (or starts again) accepting connections; open ones are cut."""
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            allow = "false" if refuse else "true"
            await connection.execute(
                text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {allow}')
            )
            if refuse:
                await connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": database},
                )
    finally:
        await admin.dispose()


async def test_ready_turns_false_while_a_services_database_is_unreachable(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.endswith(("DATABASE_URL", "HTTP_PORT"))}
        env.update(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers, PIMMS_DATA_DIR=str(tmp_path))
        databases: dict[str, str] = {}
        ports: dict[str, int] = {}
        for spec in SERVICES:
            url = await stack.enter_async_context(fresh_postgres_database())
            databases[spec.name] = str(make_url(url).database)
            ports[spec.name] = free_port()
            env[f"{spec.env_prefix}DATABASE_URL"] = url
            env[spec.http_port_env] = str(ports[spec.name])
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        processes = []
        logs = []
        try:
            for spec in SERVICES:
                log = (tmp_path / f"{spec.name}.log").open("wb")
                logs.append(log)
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-m", spec.module, stdout=log, stderr=log, env=env
                    )
                )
            for spec in SERVICES:
                await wait_until(ports[spec.name], 200, within=240)

            for spec in SERVICES:
                await refuse_connections(databases[spec.name], refuse=True)
            for spec in SERVICES:
                seen = await wait_until(ports[spec.name], 503, within=60)
                assert seen["status"] == "not_ready"
                assert seen["checks"]["database"]["ok"] is False, (spec.name, seen)
                # the process itself still answers: only readiness says no
                status, _ = await fetch(f"http://127.0.0.1:{ports[spec.name]}/health/live")
                assert status == 200

            for spec in SERVICES:
                await refuse_connections(databases[spec.name], refuse=False)
            for spec in SERVICES:
                seen = await wait_until(ports[spec.name], 200, within=120)
                assert seen["checks"]["database"]["ok"] is True
        finally:
            for spec in SERVICES:
                with contextlib.suppress(Exception):
                    await refuse_connections(databases[spec.name], refuse=False)
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    await asyncio.wait_for(process.wait(), timeout=30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            for log in logs:
                log.close()
