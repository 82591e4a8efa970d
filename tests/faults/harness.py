"""What the fault and hostile-input tests share: the platform as real processes, valid traffic,
EDF and La Poste answering like partners, a test-owned PostgreSQL cluster, and the final audit.

The audit reads only what a user or a partner sees (the public topics, the partners' feeds) plus
the referrals table, and counts: sent, cases, referrals, re-sends (the same message published
again: allowed), duplicated effects (two different cases, referrals or notifications for one
thing: never), lost (a valid need without its closed case: never), dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from glob import glob
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from defusedxml import ElementTree
from pimms_cli.config import SERVICES, platform_services
from pimms_cli.platform import Platform
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_servicekit.health import is_alive
from pimms_servicekit.tansu import free_port
from pimms_servicekit.testing import Record, TopicWatcher, produce
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PARIS = ZoneInfo("Europe/Paris")
LA_POSTE_NS = "urn:laposte:mediation:pimms:1"
EDF_FEED = topics.partner_referrals("edf")
LA_POSTE_FEED = topics.partner_referrals("la-poste")
EDF_ANSWERS = topics.partner_responses("edf")
LA_POSTE_ANSWERS = topics.partner_responses("la-poste")
INBOUND = (topics.INTAKE_NEEDS, EDF_ANSWERS, LA_POSTE_ANSWERS)
WATCHED = (
    topics.INTAKE_FEEDBACK,
    topics.CASES,
    topics.NOTIFICATIONS,
    EDF_FEED,
    LA_POSTE_FEED,
    *(topics.dead_letters(t) for t in INBOUND),
)
HOSTILE = "x-pimms-test-hostile"  # every hostile message carries its label here
SUBMITTED = "fr.pimms.need.submitted.v1"
ACCEPTED = "fr.pimms.need.accepted.v1"
REJECTED = "fr.pimms.need.rejected.v1"
CLOSED = "fr.pimms.case.closed.v1"
SENT = "fr.pimms.notification.sent.v1"


class Watcher(TopicWatcher):
    """A TopicWatcher that takes any key (hostile ones are not UTF-8) and notes arrival times."""

    def __init__(self, bootstrap_servers: str, names: Sequence[str]) -> None:
        super().__init__(bootstrap_servers, names)
        self.arrivals: list[float] = []
        self.answered: set[str] = set()  # referrals the partners answered (whoever drives them)
        self.answered_upto = 0
        self.raw_keys: dict[tuple[str, int, int], bytes | None] = {}

    async def poll(self) -> None:
        """Read what has arrived."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
        now = time.monotonic()
        for records in batches.values():
            for r in records:
                self.raw_keys[(r.topic, r.partition, r.offset)] = r.key
                self.records.append(
                    Record(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        key=r.key.decode(errors="replace") if r.key is not None else None,
                        value=r.value,
                        headers={k: (v or b"").decode(errors="replace") for k, v in r.headers},
                    )
                )
                self.arrivals.append(now)


def desk_headers(ce_type: str = SUBMITTED) -> list[tuple[str, bytes]]:
    """CloudEvents headers as a front-office tool sets them."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:pimms:site:faults:frontdesk"),
        ("ce_type", ce_type.encode()),
        ("ce_time", datetime.now(PARIS).isoformat().encode()),
        ("content-type", b"application/json"),
    ]


def valid_needs(count: int) -> list[dict[str, Any]]:
    """Needs for EDF (two in three) and for La Poste, each with SMS consent."""
    needs = []
    for i in range(count):
        if i % 3 == 2:
            needs.append(
                need_submitted(
                    site_id="brest",
                    visitor__postal_code="29200",
                    need__category="postal_service",
                    need__urgency="normal",
                )
            )
        else:
            needs.append(need_submitted())
    return needs


def need_message(need: dict[str, Any]) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) of a valid need."""
    return (
        topics.INTAKE_NEEDS,
        need["submission_id"].encode(),
        json.dumps(need).encode(),
        desk_headers(),
    )


async def send_paced(bootstrap: str, messages: Sequence[Any], *, seconds: float) -> None:
    """Publish `messages` spread over about `seconds` (a load, not a single burst)."""
    chunks = max(int(seconds * 4), 1)
    size = max(len(messages) // chunks, 1)
    for start in range(0, len(messages), size):
        await produce(bootstrap, list(messages[start : start + size]))
        await asyncio.sleep(0.25)


def edf_answers(reference: str) -> list[bytes]:
    """EDF receives the referral, then closes it with a solution."""
    now = datetime.now(PARIS).isoformat(timespec="seconds")
    return [
        json.dumps({"reference": reference, "statut": "RECU", "horodatage": now}).encode(),
        json.dumps(
            {
                "reference": reference,
                "statut": "CLOS",
                "resultat": "SOLUTION_TROUVEE",
                "horodatage": now,
            }
        ).encode(),
    ]


def la_poste_answers(reference: str) -> list[bytes]:
    """La Poste receives the demande, then treats it favourably."""
    now = datetime.now(PARIS).isoformat(timespec="seconds")
    return [
        f'<reponse xmlns="{LA_POSTE_NS}" reference="{reference}" etat="{etat}" '
        f'horodatage="{now}">{inner}</reponse>'.encode()
        for etat, inner in (("recue", ""), ("traitee", "<issue>favorable</issue>"))
    ]


def referral_on_feed(record: Record) -> tuple[str, str] | None:
    """(case reference, referral id) of a referral on a partner's feed; None for other messages."""
    with contextlib.suppress(Exception):
        if record.topic == EDF_FEED:
            body = record.json
            if "dossierPimms" in body and body.get("statut") is None:
                return str(body["dossierPimms"]), str(body["reference"])
        elif record.topic == LA_POSTE_FEED:
            root = ElementTree.fromstring(record.value)
            if root.tag.endswith("demande"):
                return str(root.get("dossier")), str(root.get("reference"))
    return None


@dataclass
class Partners:
    """EDF and La Poste answer each new referral once (not again when it is re-sent)."""

    bootstrap: str
    watcher: Watcher

    async def answer_new(self) -> int:
        """Answer the referrals that arrived since the last call; return how many."""
        records = self.watcher.records
        messages = []
        for record in records[self.watcher.answered_upto :]:
            found = referral_on_feed(record)
            if found is None or found[1] in self.watcher.answered:
                continue
            _, reference = found
            self.watcher.answered.add(reference)
            if record.topic == EDF_FEED:
                messages += [
                    (EDF_ANSWERS, reference.encode(), a, []) for a in edf_answers(reference)
                ]
            else:
                messages += [
                    (LA_POSTE_ANSWERS, reference.encode(), a, [])
                    for a in la_poste_answers(reference)
                ]
        self.watcher.answered_upto = len(records)
        if messages:
            await produce(self.bootstrap, messages)
        return len(messages) // 2


@dataclass
class Audit:
    """What the platform did with `needs`, as users and partners see it."""

    sent: int
    cases: int
    referrals: int
    resends: int
    duplicated: int
    lost: int
    dead_letters: int
    closed: int
    problems: list[str]

    def line(self, scenario: str, *, stall: float | None, extra: str = "") -> str:
        """The line a scenario prints."""
        stalled = f"{stall:.1f}s" if stall is not None else "n/a"
        return (
            f"[faults] {scenario}: sent={self.sent} cases={self.cases} referrals={self.referrals} "
            f"re-sends={self.resends} duplicated_effects={self.duplicated} lost={self.lost} "
            f"dead_letters={self.dead_letters} closed={self.closed} "
            f"longest_stall_after_fault={stalled}{extra}"
        )


def audit(
    watcher: Watcher, needs: Sequence[dict[str, Any]], *, db_referrals: Sequence[str] | None
) -> Audit:
    """Count cases, referrals, notifications and dead letters for `needs`."""
    ours = {n["submission_id"] for n in needs}
    problems: list[str] = []
    resends = 0
    case_of: dict[str, set[str]] = defaultdict(set)
    reference_of: dict[str, str] = {}
    accepted_ids: dict[str, int] = defaultdict(int)
    for r in watcher.of(topics.INTAKE_FEEDBACK, ACCEPTED):
        body = r.json
        if body["submission_id"] in ours:
            case_of[body["submission_id"]].add(body["case_id"])
            reference_of[body["case_id"]] = body["case_reference"]
            accepted_ids[r.headers.get("ce_id", "")] += 1
    resends += sum(n - 1 for n in accepted_ids.values())
    cases = {c for ids in case_of.values() for c in ids}
    duplicated = sum(len(ids) - 1 for ids in case_of.values())
    references = {reference_of[c] for c in cases}
    referrals_of: dict[str, set[str]] = defaultdict(set)
    feed_copies: dict[str, int] = defaultdict(int)
    for r in watcher.of(EDF_FEED) + watcher.of(LA_POSTE_FEED):
        found = referral_on_feed(r)
        if found is not None and found[0] in references:
            referrals_of[found[0]].add(found[1])
            feed_copies[found[1]] += 1
    resends += sum(n - 1 for n in feed_copies.values())
    duplicated += sum(len(ids) - 1 for ids in referrals_of.values())
    closed_ids: dict[str, set[str]] = defaultdict(set)
    for r in watcher.of(topics.CASES, CLOSED):
        if r.json["case_id"] in cases:
            closed_ids[r.json["case_id"]].add(r.headers.get("ce_id", ""))
    duplicated += sum(len(ids) - 1 for ids in closed_ids.values())
    notices: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in watcher.of(topics.NOTIFICATIONS, SENT):
        body = r.json
        if body["case_id"] in cases:
            notices[(body["case_id"], body["template"], body["audience"])].add(
                body["notification_id"]
            )
    twice = {k: v for k, v in notices.items() if len(v) > 1}
    duplicated += sum(len(v) - 1 for v in twice.values())
    if twice:
        problems.append(f"notifications sent twice: {sorted(twice)[:3]}")
    lost_needs = [s for s in ours if s not in case_of]
    unreferred = [c for c in cases if reference_of[c] not in referrals_of]
    unclosed = [c for c in cases if c not in closed_ids]
    unnotified = [
        c for c in closed_ids if not any(k[0] == c and k[2] == "mediator" for k in notices)
    ]
    for what, missing in (
        ("needs without a case", lost_needs),
        ("cases without a referral", unreferred),
        ("cases not closed", unclosed),
        ("closed cases without a mediator notification", unnotified),
    ):
        if missing:
            problems.append(f"{len(missing)} {what}")
    if db_referrals is not None:
        stored = [c for c in db_referrals if c in cases]
        if len(stored) != len(cases) or set(stored) != cases:
            problems.append(f"{len(stored)} referral rows for {len(cases)} cases")
            duplicated += max(len(stored) - len(set(stored)), 0)
    dead_records = [r for t in INBOUND for r in watcher.of(topics.dead_letters(t))]
    dead = len(dead_records)
    unexpected: dict[str, int] = defaultdict(int)
    for r in dead_records:
        if HOSTILE not in r.headers:
            unexpected[f"{r.topic}:{r.headers.get('pimms_dlt_reason')}"] += 1
    if unexpected:
        problems.append(f"dead letters of valid traffic: {dict(unexpected)}")
    return Audit(
        sent=len(ours),
        cases=len(cases),
        referrals=sum(len(v) for v in referrals_of.values()),
        resends=resends,
        duplicated=duplicated,
        lost=len(set(lost_needs) | {s for s, ids in case_of.items() if ids & set(unclosed)}),
        dead_letters=dead,
        closed=len(closed_ids),
        problems=problems,
    )


def complete(watcher: Watcher, needs: Sequence[dict[str, Any]]) -> bool:
    """Every need has its case closed and the mediator told."""
    return audit(watcher, needs, db_referrals=None).problems == []


def longest_gap(arrivals: Sequence[float], *, since: float, until: float) -> float:
    """The longest time without any output between `since` and `until` (the pipeline's stall)."""
    points = [since, *(a for a in arrivals if since < a < until), until]
    return max(b - a for a, b in itertools.pairwise(points))


async def referral_rows(platform: Platform) -> list[str]:
    """The case id of every referral the referrals service stored (its own database)."""
    url = platform.database_urls.get("referrals") or (
        f"sqlite+aiosqlite:///{platform.data_dir / 'referrals.db'}"
    )
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT case_id FROM referrals"))
            return [str(r[0]) for r in rows]
    finally:
        await engine.dispose()


def all_alive(platform: Platform) -> list[str]:
    """The service instances that are not alive (process gone or no heartbeat of their own)."""
    return [
        name
        for spec in SERVICES
        for name in platform.instance_names(spec)
        if platform.running[name].process.returncode is not None
        or not is_alive(platform.data_dir, name)
    ]


async def drive(
    platform: Platform,
    watcher: Watcher,
    needs: Sequence[dict[str, Any]],
    *,
    timeout: float,
    pending: Callable[[], list[str]] = list,
) -> None:
    """Let the partners answer until every need is closed and nothing is `pending()`, or fail."""
    partners = Partners(platform.bootstrap_servers, watcher)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await watcher.poll()
        await partners.answer_new()
        if complete(watcher, needs) and not pending():
            return
        await asyncio.sleep(0.3)
    found = audit(watcher, needs, db_referrals=None)
    raise AssertionError(f"not done after {timeout:.0f}s: {found.problems + pending()}")


async def answering(platform: Platform, watcher: Watcher, stop: asyncio.Event) -> None:
    """The partners answer in the background until `stop` (during the load and the fault)."""
    partners = Partners(platform.bootstrap_servers, watcher)
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(watcher.poll(), timeout=5)
            await asyncio.wait_for(partners.answer_new(), timeout=30)
        await asyncio.sleep(0.3)


@asynccontextmanager
async def platform_running(
    data_dir: Path,
    *,
    bootstrap: str | None,
    database_urls: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    instances: int = 1,
) -> AsyncIterator[tuple[Platform, Watcher]]:
    """The four services as processes (supervised: a dead one is started again) and a watcher."""
    # Any free HTTP port: other platforms may run on this machine at the same time.
    env = {**{f"{spec.env_prefix}HTTP_PORT": str(free_port()) for spec in SERVICES}, **(env or {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    platform = Platform(
        data_dir=data_dir,
        bootstrap=bootstrap,
        echo=False,
        prefer_port=free_port(),  # never the shared 9092
        database_urls=database_urls or {},
        instances=instances,
    )
    supervisor: asyncio.Task[None] | None = None
    watcher: Watcher | None = None
    try:
        await platform.start()
        await platform.wait_ready(timeout=120)
        supervisor = asyncio.create_task(platform.supervise())
        watcher = Watcher(platform.bootstrap_servers, WATCHED)
        await watcher.start()
        yield platform, watcher
    finally:
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.stop()
        platform.stopping = True
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervisor
        await platform.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries on this machine."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """A PostgreSQL cluster this test owns (initdb in a temporary directory, a free port), run
    as the `postgres` OS user when we are root. Never the shared server on 5432."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = binaries
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pimms-faults-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, check=check, timeout=120)

    @property
    def admin_url(self) -> str:
        """The superuser's URL (trust authentication on localhost)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        """initdb."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (every connection is cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    async def database(self, name: str) -> str:
        """Create a database; return its URL."""
        engine = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await engine.dispose()
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def remove(self) -> None:
        """Stop and delete everything."""
        self.stop(mode="immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@asynccontextmanager
async def platform_on(backend: str, data_dir: Path) -> AsyncIterator[tuple[Platform, Watcher]]:
    """`platform_running` on the embedded broker, on SQLite or on a test-owned PostgreSQL."""
    async with AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        if backend == "postgresql":
            _, urls = await stack.enter_async_context(own_postgres())
        yield await stack.enter_async_context(
            platform_running(data_dir, bootstrap=None, database_urls=urls)
        )


@asynccontextmanager
async def own_postgres() -> AsyncIterator[tuple[PostgresCluster, dict[str, str]]]:
    """A test-owned cluster with one database per service (`pimms dev` runs the optional ones
    installed, reporting say, too: several instances need all of them on PostgreSQL)."""
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        urls = {
            spec.name: await cluster.database(spec.name.replace("-", "_"))
            for spec in platform_services()
        }
        yield cluster, urls
    finally:
        cluster.remove()


def broker_pid(platform: Platform) -> int:
    """The embedded broker's process id (its process group leader)."""
    assert platform.broker is not None, "this scenario needs the platform's own broker"
    process = platform.broker._process  # the test freezes the broker it owns
    assert process is not None
    return process.pid


def freeze(pid: int) -> None:
    """SIGSTOP a process group."""
    os.killpg(pid, signal.SIGSTOP)


def thaw(pid: int) -> None:
    """SIGCONT a process group."""
    os.killpg(pid, signal.SIGCONT)


def log_events(data_dir: Path, name: str, events: set[str]) -> list[dict[str, Any]]:
    """The JSON log lines of one service instance whose event is in `events`."""
    path = data_dir / "logs" / f"{name}.log"
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") in events:
                found.append(event)
    return found


def log_lines_between(data_dir: Path, since: float, until: float) -> dict[str, Counter[str]]:
    """Per service, the warning and error lines (and non-JSON lines, tracebacks) logged between
    two wall-clock times, counted by event: the noise a fault makes."""
    noise: dict[str, Counter[str]] = {}
    for spec in SERVICES:
        path = data_dir / "logs" / f"{spec.name}.log"
        found: Counter[str] = Counter()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                found["<not JSON>"] += 1
                continue
            stamp = event.get("ts")
            loud = event.get("level") in {"warning", "error", "critical"}
            if loud and stamp and since <= _epoch(stamp) <= until:
                found[str(event.get("event", ""))[:80]] += 1
        noise[spec.name] = found
    return noise


def _epoch(stamp: str) -> float:
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return 0.0


__all__ = ["AsyncExitStack"]
