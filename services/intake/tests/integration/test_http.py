"""Intake's HTTP server on a real broker and database: probes and Prometheus metrics, as a
monitoring system reads them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_intake.app import build_runtime
from pimms_servicekit.testing import KafkaEndpoint, TopicWatcher, produce

from .test_on_real_broker import need_message, settings_for

pytestmark = pytest.mark.integration


async def test_probes_and_metrics(kafka: KafkaEndpoint, database_url: str, tmp_path: Path) -> None:
    settings = settings_for(kafka, database_url, tmp_path).model_copy(update={"http_port": 0})
    runtime = build_runtime(settings)
    app = runtime.build_app()
    await app.start()
    watcher = await TopicWatcher(kafka.bootstrap_servers, [topics.INTAKE_FEEDBACK]).start()
    try:
        base = f"http://127.0.0.1:{runtime.http.bound_port}"
        need = need_submitted()
        await produce(kafka.bootstrap_servers, [need_message(need), need_message({}, value=b"{")])
        await watcher.wait_for(
            lambda records: any(
                r.json.get("submission_id") == need["submission_id"] for r in records
            )
        )
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/health/live")).status_code == 200
            for _ in range(50):
                ready = await client.get("/health/ready")
                if ready.status_code == 200:
                    break
                await watcher.poll()
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["consumer"]["partitions"] > 0
            metrics = (await client.get("/metrics")).text
            # The broker is shared by this module's tests: counts are at least this test's.
            assert _value(metrics, "pimms_messages_consumed_total", topic=topics.INTAKE_NEEDS) >= 1
            assert _value(metrics, "pimms_dead_letters_total", topic=topics.INTAKE_NEEDS) >= 1
            assert "pimms_outbox_backlog" in metrics
            assert "pimms_batch_seconds_bucket" in metrics

            # The database goes away: the service is not ready, and says why.
            await runtime.database.engine.dispose()
            runtime.database.engine.pool._creator = _refuse  # type: ignore[attr-defined]
            broken = await client.get("/health/ready")
            assert broken.status_code == 503
            assert broken.json()["checks"]["database"]["ok"] is False
    finally:
        await watcher.stop()
        await app.stop()


def _refuse(*_: object) -> None:
    raise ConnectionRefusedError("database unreachable")


def _value(metrics: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
