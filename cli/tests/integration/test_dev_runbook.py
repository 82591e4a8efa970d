"""`pimms dev` as an operator runs it (steered clock, HTTP ports, graceful stop) and every command
of docs/runbook.md, run against it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pimms_cli.config import SERVICES
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_servicekit.clock import PARIS
from pimms_servicekit.tansu import free_port
from pimms_servicekit.testing import KafkaEndpoint, TopicWatcher, produce

# A whole platform and a dozen `pimms` commands: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[3]
RUNBOOK = ROOT / "docs" / "runbook.md"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
TIME_START = "2026-11-27T09:00:00+01:00"
SNCF_SECRET = "new-secret-for-the-runbook"
SNCF_PREVIOUS = "old-secret-for-the-runbook"
BANK_SECRET_ENV = "PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET"
URL_VARIABLES = {
    "intake": "INTAKE_URL",
    "referrals": "REFERRALS_URL",
    "partner-gateways": "GATEWAYS_URL",
    "notifications": "NOTIFICATIONS_URL",
}


@dataclass
class Dev:
    """A `pimms dev` process whose output is read in the background."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    data_dir: Path
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, *, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if re.search(pattern, line):
                    return line
            seen = len(self.lines)
            if self.process.poll() is not None and seen == len(self.lines):
                break
            time.sleep(0.2)
        tail = "\n".join(self.lines[-30:])
        raise AssertionError(f"pimms dev never printed {pattern!r}; last lines:\n{tail}")

    def terminal(self) -> list[str]:
        """The lines `pimms dev` itself printed (not the services' JSON lines)."""
        return [line for line in self.lines if "| {" not in line]


def user_env(data_dir: Path, kafka: KafkaEndpoint, ports: dict[str, int]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("DATABASE_URL", "HTTP_PORT")) and not k.startswith("PIMMS_TIME_")
    }
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
        PIMMS_DATA_DIR=str(data_dir),
        COLUMNS="100",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PIMMS_SNCF_WEBHOOK_SECRET=SNCF_SECRET,
        PIMMS_SNCF_WEBHOOK_SECRET_PREVIOUS=SNCF_PREVIOUS,
    )
    env.pop(BANK_SECRET_ENV, None)  # left unset: `pimms dev` gives it a development value
    for spec in SERVICES:
        env[spec.http_port_env] = str(ports[spec.name])
    return env


@pytest.fixture(scope="module")
def dev(kafka: KafkaEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    data_dir = tmp_path_factory.mktemp("pimms-dev")
    ports = {spec.name: free_port() for spec in SERVICES}
    env = user_env(data_dir, kafka, ports)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pimms_cli.main",
            "dev",
            "--time-scale",
            "60",
            "--time-start",
            TIME_START,
            "--drain-timeout",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    running = Dev(process=process, env=env, data_dir=data_dir, ports=ports)
    threading.Thread(target=running.read, daemon=True).start()
    try:
        running.wait_for(r"^platform ready", timeout=240)
        yield running
    finally:
        stop_for_good(process)


def children(pid: int) -> list[int]:
    """The processes `pid` started (the services of a `pimms dev`)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop_for_good(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, and if `pimms dev` does not stop, kill it and the services it started."""
    if process.poll() is not None:
        return
    services = children(process.pid)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
        for pid in services:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class Seeded:
    reference: str
    dlt_id: str


def _desk_headers() -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:pimms:site:lyon-8:frontdesk"),
        ("ce_type", b"fr.pimms.need.submitted.v1"),
        ("ce_time", datetime.now(PARIS).isoformat().encode()),
        ("content-type", b"application/json"),
    ]


async def _seed(bootstrap: str) -> Seeded:
    """One EDF case, then a status EDF does not have: a dead letter of the case."""
    need = need_submitted()
    edf_feed = topics.partner_referrals("edf")
    edf_dlt = topics.dead_letters(topics.partner_responses("edf"))
    watcher = await TopicWatcher(bootstrap, [topics.INTAKE_FEEDBACK, edf_feed, edf_dlt]).start()
    try:
        await produce(
            bootstrap,
            [
                (
                    topics.INTAKE_NEEDS,
                    need["submission_id"].encode(),
                    json.dumps(need).encode(),
                    _desk_headers(),
                )
            ],
        )
        await watcher.wait_for(
            lambda _: bool(watcher.of(edf_feed)), timeout=90, what="the referral on EDF's feed"
        )
        accepted = watcher.of(topics.INTAKE_FEEDBACK, "fr.pimms.need.accepted.v1")
        reference = accepted[0].json["case_reference"]
        referral = watcher.of(edf_feed)[0].json["reference"]
        bad = {
            "reference": referral,
            "statut": "EGAREE",
            "commentaire": "Mme Marie Dupont, 06 12 34 56 78",
            "horodatage": "2026-11-27T09:40:00+01:00",
        }
        await produce(
            bootstrap,
            [(topics.partner_responses("edf"), referral.encode(), json.dumps(bad).encode(), [])],
        )
        await watcher.wait_for(
            lambda _: bool(watcher.of(edf_dlt)), timeout=90, what="the dead letter of EDF's status"
        )
        letter = watcher.of(edf_dlt)[0]
        return Seeded(reference=reference, dlt_id=f"{edf_dlt}:{letter.partition}:{letter.offset}")
    finally:
        await watcher.stop()


@pytest.fixture(scope="module")
def seeded(dev: Dev, kafka: KafkaEndpoint) -> Seeded:
    return asyncio.run(_seed(kafka.bootstrap_servers))


def bash_blocks(markdown: str) -> list[str]:
    """The fenced ```bash blocks of a Markdown text, in order."""
    return re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


def test_dev_prints_the_shared_platform_clock_and_every_services_http_port(dev: Dev) -> None:
    printed = dev.terminal()
    clock = next(line for line in printed if line.startswith("platform time:"))
    assert "starts at 2026-11-27T08:00:00+00:00, runs 60x faster" in clock
    anchor = re.search(r"PIMMS_TIME_ANCHOR=(\S+)\)", clock)
    assert anchor is not None
    anchors: set[str] = set()
    for spec in SERVICES:
        port = dev.ports[spec.name]
        assert any(
            line.startswith(spec.name) and f"http://127.0.0.1:{port}" in line for line in printed
        ), f"{spec.name}'s port is not printed"
        log = (dev.data_dir / "logs" / f"{spec.name}.log").read_text(encoding="utf-8")
        steered = [json.loads(line) for line in log.splitlines() if '"clock.steered"' in line]
        assert steered, f"{spec.name} did not say its clock is steered"
        assert steered[-1]["time_scale"] == 60
        assert steered[-1]["time_start"] == "2026-11-27T08:00:00+00:00"
        anchors.add(steered[-1]["time_anchor"])
    assert len(anchors) == 1, f"the services do not share one clock: {anchors}"
    anchor_time = datetime.fromtimestamp(float(anchor.group(1)), UTC).isoformat()
    assert anchors.pop() == anchor_time  # whole: the log scrubber leaves clock times alone


def test_dev_gives_an_unset_webhook_secret_a_development_value_and_keeps_the_users(
    dev: Dev,
) -> None:
    printed = dev.terminal()
    [said] = [line for line in printed if line.startswith("webhook secret of ")]
    assert f"banque-postale: development value in {BANK_SECRET_ENV}=" in said
    assert all(SNCF_SECRET not in line for line in printed)  # the user's own is never printed
    secret = said.split(f"{BANK_SECRET_ENV}=", 1)[1].split()[0]
    # the gateway checks La Banque Postale's answers with it: an unknown referral, not a 401
    at = datetime.now(UTC).isoformat()
    body = json.dumps({"referral_id": str(uuid.uuid4()), "status": "received", "at": at}).encode()
    stamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)

    def answer(signed: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{dev.ports['partner-gateways']}/partners/banque-postale/responses",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-PIMMS-Timestamp": stamp,
                "X-PIMMS-Signature": signed,
            },
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310 - the test's own platform
        return refused.value.code

    assert answer("sha256=" + signature.hexdigest()) == 404
    assert answer("sha256=" + "0" * 64) == 401


def test_every_command_of_the_runbook_works_on_a_running_platform(dev: Dev, seeded: Seeded) -> None:
    blocks = bash_blocks(RUNBOOK.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    env = {
        **dev.env,
        "REF": seeded.reference,
        "DLT_ID": seeded.dlt_id,
        **{
            variable: f"http://127.0.0.1:{dev.ports[name]}"
            for name, variable in URL_VARIABLES.items()
        },
    }
    outputs = []
    for block in blocks:
        result = subprocess.run(
            ["bash", "-eu", "-c", block],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, f"runbook block failed:\n{block}\n{result.stdout}\n" + (
            result.stderr
        )
        outputs.append(result.stdout)
    text = "\n".join(outputs)
    assert f"Case {seeded.reference}" in text  # trace and logs found it
    assert seeded.dlt_id in text  # listed, shown
    assert "unknown_status" in text
    for personal in ("Dupont", "+33612345678", "06 12 34 56 78"):
        assert personal not in text  # masked in `show`, absent from logs and traces
    assert f"replayed {seeded.dlt_id}" in text
    assert "pimms_outbox_backlog" in text
    assert '"status":"ready"' in text.replace(" ", "")  # notifications ready after its restart
    assert "refused, as it should on SQLite" in text
    sncf_codes = re.findall(r"^(\d{3})$", outputs[-1], flags=re.MULTILINE)
    assert len(sncf_codes) == 2
    assert "401" not in sncf_codes  # both the current and the previous secret are accepted
    dev.wait_for(r"^notifications\s+\| exited with code \d+; starting it again", timeout=5)


def test_every_alert_is_explained_in_the_runbook_and_uses_real_metrics(dev: Dev) -> None:
    runbook = RUNBOOK.read_text(encoding="utf-8")
    rules = ALERTS.read_text(encoding="utf-8")
    alerts = re.findall(r"- alert: (\w+)", rules)
    assert len(alerts) >= 6
    for alert in alerts:
        assert f"**{alert}**" in runbook, f"{alert} is not explained in docs/runbook.md"
    exposed = ""
    for spec in SERVICES:
        exposed += get_text(f"http://127.0.0.1:{dev.ports[spec.name]}/metrics")
    for metric in set(re.findall(r"\b(pimms_[a-z_]+)", rules)):
        base = metric.removesuffix("_total")
        assert re.search(rf"^# TYPE {base}(_total)? ", exposed, re.MULTILINE), (
            f"{metric} is in an alert but no service exposes it"
        )


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a test's own URL
        return str(response.read().decode())


def test_ctrl_c_drains_then_stops_every_service(dev: Dev) -> None:
    dev.process.send_signal(signal.SIGINT)
    dev.process.wait(timeout=120)
    time.sleep(0.5)  # the reader thread takes the last lines
    printed = "\n".join(dev.terminal())
    assert dev.process.returncode == 0, printed[-3000:]
    assert "drained: nothing in flight; stopping" in printed
    for spec in SERVICES:
        log = (dev.data_dir / "logs" / f"{spec.name}.log").read_text(encoding="utf-8")
        assert '"event": "service.stopped"' in log
