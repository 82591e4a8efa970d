"""The pure parts of `pimms dev` and `pimms docs`: platform time, work in flight, documents."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pimms_cli.platform
import pytest
from pimms_cli.config import (
    SERVICES,
    describe_dev_secrets,
    dev_webhook_secrets,
    gateway_directory_path,
    is_postgresql,
    platform_services,
)
from pimms_cli.dev import run_dev, stop_message
from pimms_cli.devtime import ClockSettingError, describe_time, time_environment
from pimms_cli.docs import documents_dir, load_documents, make_server, render_document
from pimms_cli.platform import Platform
from pimms_cli.probes import InFlight, in_flight_of, metric_sum
from pimms_contracts.partners import load_directory

NOW = 1_795_000_000.5


def test_a_time_scale_gives_every_service_the_same_start_and_anchor() -> None:
    variables = time_environment(scale=600, start="2026-11-27T09:00:00+01:00", environ={}, now=NOW)
    assert variables == {
        "PIMMS_TIME_SCALE": "600",
        "PIMMS_TIME_START": "2026-11-27T08:00:00+00:00",
        "PIMMS_TIME_ANCHOR": repr(NOW),
    }
    assert describe_time(variables).startswith(
        "platform time: starts at 2026-11-27T08:00:00+00:00, runs 600x faster"
    )


def test_without_a_start_platform_time_starts_now_and_without_a_scale_it_is_real_time() -> None:
    variables = time_environment(scale=2.5, start=None, environ={}, now=NOW)
    assert variables["PIMMS_TIME_SCALE"] == "2.5"
    assert variables["PIMMS_TIME_START"] == "2026-11-18T11:06:40.500000+00:00"  # now
    assert time_environment(scale=None, start=None, environ={}, now=NOW) == {}
    assert describe_time({}) == "platform time: real time"


def test_the_environment_is_used_when_no_option_is_given_and_its_anchor_is_kept() -> None:
    environ = {"PIMMS_TIME_SCALE": "10", "PIMMS_TIME_ANCHOR": "1795000000"}
    variables = time_environment(scale=None, start=None, environ=environ, now=NOW)
    assert variables["PIMMS_TIME_SCALE"] == "10"
    assert variables["PIMMS_TIME_ANCHOR"] == "1795000000"


@pytest.mark.parametrize(
    ("scale", "start", "named"),
    [(0, None, "PIMMS_TIME_SCALE"), (None, "2026-11-27T09:00", "PIMMS_TIME_START")],
)
def test_a_wrong_time_setting_names_its_variable(
    scale: float | None, start: str | None, named: str
) -> None:
    with pytest.raises(ClockSettingError, match=named):
        time_environment(scale=scale, start=start, environ={}, now=NOW)


METRICS = """# HELP pimms_consumer_lag Records behind the partition end
# TYPE pimms_consumer_lag gauge
pimms_consumer_lag{partition="0",topic="pimms.cases.v1"} 3.0
pimms_consumer_lag{partition="1",topic="pimms.cases.v1"} 4.0
pimms_consumer_lag_other 100.0
# TYPE pimms_outbox_backlog gauge
pimms_outbox_backlog 9.0
pimms_effects_backlog{destination="sms"} 2.0
"""


def test_work_in_flight_is_read_from_readiness_and_metrics() -> None:
    assert metric_sum(METRICS, "pimms_consumer_lag") == 7.0
    ready = {"status": "ready", "checks": {"outbox": {"ok": True, "backlog": 5}}}
    left = in_flight_of(ready=ready, metrics=METRICS)
    assert left == InFlight(outbox=5, lag=7, effects=2)
    assert in_flight_of(ready={}, metrics=METRICS).outbox == 9  # no readiness body: the gauge
    total = left + InFlight(unknown=("intake",))
    assert total.describe() == (
        "14 messages (outbox 5, consumer lag 7, effects 2); no answer from intake"
    )
    assert not total.drained
    assert InFlight().drained


def test_the_stop_message_says_what_was_still_in_flight_and_where_it_is() -> None:
    assert stop_message(left_total=0, left_text="0", embedded=True, timeout=15) == (
        "drained: nothing in flight; stopping"
    )
    message = stop_message(
        left_total=12, left_text=InFlight(outbox=2, lag=10).describe(), embedded=True, timeout=15
    )
    assert message.startswith("stopping after 15s of draining with 12 messages (outbox 2, ")
    assert "lost with it" in message
    assert "lost" not in stop_message(left_total=3, left_text="3", embedded=False, timeout=5)


def test_several_instances_are_refused_unless_every_database_is_postgresql(tmp_path: Path) -> None:
    sqlite = Platform(data_dir=tmp_path, instances=2, services=SERVICES)
    with pytest.raises(RuntimeError, match="several instances need PostgreSQL: set the PIMMS_"):
        sqlite.check_instances()
    urls = {s.name: f"postgresql+asyncpg://pimms@db/{s.name}" for s in SERVICES}
    Platform(
        data_dir=tmp_path, instances=2, services=SERVICES, database_urls=urls
    ).check_instances()
    Platform(data_dir=tmp_path, instances=1, services=SERVICES).check_instances()
    assert is_postgresql("postgresql://x/y")
    assert not is_postgresql("sqlite+aiosqlite:///x.db")


def test_instances_have_their_own_names_ports_and_log_files(tmp_path: Path) -> None:
    platform = Platform(data_dir=tmp_path, instances=2, services=SERVICES[:1])
    assert platform.instance_names(SERVICES[0]) == ["intake-1", "intake-2"]
    platform._ports = {"intake-1": 18001, "intake-2": 18002}
    env = platform.service_env(SERVICES[0], name="intake-2")
    assert env["PIMMS_INTAKE_HTTP_PORT"] == "18002"
    assert env["PIMMS_INSTANCE"] == "intake-2"
    assert Platform(data_dir=tmp_path).instance_names(SERVICES[0]) == ["intake"]


def test_pimms_docs_serves_each_services_asyncapi_document() -> None:
    documents = load_documents(documents_dir())
    assert set(documents) == {s.name for s in platform_services()}
    page = render_document("intake", documents["intake"])
    assert "pimms.intake.needs.v1" in page
    assert "fr.pimms.need.submitted.v1" in page
    server = make_server(documents_dir(), host="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/") as index:  # noqa: S310 - a test's own server
            assert "partner-gateways.html" in index.read().decode()
        with urllib.request.urlopen(f"{base}/partner-gateways.json") as raw:  # noqa: S310
            assert json.loads(raw.read())["asyncapi"] == "3.0.0"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{base}/secrets.json")  # noqa: S310
    finally:
        server.shutdown()
        server.server_close()


class _FakePlatform:
    """Records what `pimms dev` would start the services with; its start fails at once."""

    made: list[_FakePlatform] = []

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.stopped = False
        _FakePlatform.made.append(self)

    def check_instances(self) -> None:
        return None

    async def start(self) -> None:
        raise RuntimeError("not starting anything in a unit test")

    async def stop(self) -> None:
        self.stopped = True


def test_dev_gives_webhook_partners_development_secrets_and_keeps_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("PIMMS_PARTNER_DIRECTORY", "PIMMS_GATEWAYS_PARTNER_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIMMS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("PIMMS_SNCF_WEBHOOK_SECRET", "the-users-own-secret")
    monkeypatch.setattr(pimms_cli.platform, "Platform", _FakePlatform)
    _FakePlatform.made.clear()

    assert asyncio.run(run_dev()) == 1  # the fake platform refuses to start
    [platform] = _FakePlatform.made
    extra = platform.options["extra_env"]
    assert extra["PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET"] == "demo-banque-postale-secret"
    assert "PIMMS_SNCF_WEBHOOK_SECRET" not in extra  # the user's value stays
    printed = capsys.readouterr().out
    assert (
        "webhook secret of banque-postale: development value in "
        "PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET=demo-banque-postale-secret"
    ) in printed
    assert "the-users-own-secret" not in printed
    assert "PIMMS_SNCF_WEBHOOK_SECRET" not in printed
    # the services get them (the user's environment first, then the development values)
    services = Platform(data_dir=tmp_path, extra_env=extra, services=SERVICES)
    env = services.service_env(next(s for s in SERVICES if s.name == "partner-gateways"))
    assert env["PIMMS_SNCF_WEBHOOK_SECRET"] == "the-users-own-secret"
    assert env["PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET"] == "demo-banque-postale-secret"


def test_development_secrets_follow_the_directory_the_gateway_reads(tmp_path: Path) -> None:
    directory = tmp_path / "partners.toml"
    directory.write_text(
        """
[[partner]]
id = "mutuelle"
operator = "Mutuelle"
categories = ["health_insurance"]
territory = "all"
format = "sncf"
ack_within = "24h"
resolve_within = "7d"
transport = { kind = "webhook", url = "http://127.0.0.1:9999/in", secret_env = "MUTUELLE_KEY" }
""",
        encoding="utf-8",
    )
    environ = {"PIMMS_PARTNER_DIRECTORY": str(tmp_path / "other.toml")}
    environ["PIMMS_GATEWAYS_PARTNER_DIRECTORY"] = str(directory)  # the gateway's override wins
    assert gateway_directory_path(environ) == directory
    secrets = dev_webhook_secrets(load_directory(directory), {})
    assert [(s.partner_id, s.variable) for s in secrets] == [("mutuelle", "MUTUELLE_KEY")]
    assert secrets[0].value
    assert dev_webhook_secrets(load_directory(directory), {"MUTUELLE_KEY": "mine"}) == ()
    assert describe_dev_secrets(()) == []
    default = dev_webhook_secrets(load_directory(), {})
    assert {s.variable for s in default} == {
        "PIMMS_SNCF_WEBHOOK_SECRET",
        "PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET",
    }


def test_dev_prints_where_partners_answer_the_gateway(tmp_path: Path) -> None:
    platform = Platform(data_dir=tmp_path, services=SERVICES)
    platform._ports = {"partner-gateways": 8700, "intake": 8701}
    for spec in SERVICES[:3]:
        platform.running[spec.name] = _running(spec, platform._ports.get(spec.name))
    lines = platform.describe_ports()
    [gateway] = [line for line in lines if line.startswith("partner-gateways")]
    assert "http://127.0.0.1:8700" in gateway
    assert "/partners/<id>/responses" in gateway
    assert all("/partners/" not in line for line in lines if not line.startswith("partner-"))


def _running(spec: Any, port: int | None) -> Any:
    return SimpleNamespace(spec=spec, http_port=port)
