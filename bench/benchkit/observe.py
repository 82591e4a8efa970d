"""Watching a run: the meter (also playing EDF), the outbox sampler, processes' CPU and memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pimms_contracts import topics
from pimms_servicekit.kafka import consumer_from_start
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

TICKS = os.sysconf("SC_CLK_TCK")
EDF_FEED = topics.partner_referrals("edf")
EDF_ANSWERS = topics.partner_responses("edf")
CLOSED = b"fr.pimms.case.closed.v1"
OPENED_BY_INTAKE = b"fr.pimms.intake.case_opened.v1"
REQUESTED = b"fr.pimms.referral.requested.v1"
# Where a need's time to its partner message goes, service by service: each mark is the Kafka
# timestamp of what that service published (its relay's send), by case reference.
HOPS = (
    ("intake", "need", "opened"),
    ("referrals", "opened", "requested"),
    ("partner-gateways", "requested", "delivered"),
)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (None once it is gone)."""
    found = _command_and_cpu(Path(f"/proc/{pid}"))
    return None if found is None else found[1]


def _command_and_cpu(process: Path) -> tuple[str, float] | None:
    """A process's command name and user + system CPU seconds, from /proc/<pid>/stat."""
    try:
        stat = (process / "stat").read_text()
    except OSError:
        return None
    command, _, rest = stat.partition(" (")[2].rpartition(")")
    fields = rest.split()
    return command, (int(fields[11]) + int(fields[12])) / TICKS


def rss_peak_mb(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM), None once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


SPEED_PROBE_STEPS = 2_000_000


def speed_probe(rounds: int = 5) -> float:
    """CPU seconds of a fixed pure-Python loop, the best of a few rounds: how fast this
    machine's cores are today.

    This virtual machine's speed changes from one day to the next by up to twice, and from one
    second to the next by a third: figures of two runs compare only next to their probes."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        total = 0
        for step in range(SPEED_PROBE_STEPS):
            total += step
        best = min(best, time.process_time() - started)
    return round(best, 3)


def own_cpu_seconds() -> float:
    """CPU time of this (bench) process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_rss_peak_mb() -> float:
    """Peak RSS of this process (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def processes_named(command: str) -> dict[int, float]:
    """CPU seconds of every process whose command name is `command` (Linux /proc)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (seen := _command_and_cpu(entry)) and seen[0] == command:
            found[int(entry.name)] = seen[1]
    return found


@dataclass
class ServerCpu:
    """CPU seconds the PostgreSQL server spent from `start`: every `postgres` process (backends,
    WAL writer, checkpointer), new ones counted whole. A backend that ended before `read` is
    missed: the services keep their connections, so few do."""

    command: str = "postgres"
    at_start: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        """Take the counters now."""
        self.at_start = processes_named(self.command)

    def read(self) -> dict[str, float | None]:
        """Like a `ProcessWatch` entry; no RSS (shared buffers would count once per process)."""
        now = processes_named(self.command)
        spent = sum(cpu - self.at_start.get(pid, 0.0) for pid, cpu in now.items())
        return {"cpu_s": round(spent, 2), "peak_rss_mb": None}


@dataclass
class ProcessWatch:
    """CPU seconds from a starting point, and peak RSS, of named processes."""

    pids: dict[str, int]
    cpu_start: dict[str, float] = field(default_factory=dict)
    last: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def start(self) -> None:
        """Take the CPU counters now (the figures are what was used after this)."""
        for name, pid in self.pids.items():
            self.cpu_start[name] = cpu_seconds(pid) or 0.0

    def read(self) -> dict[str, dict[str, float | None]]:
        """CPU seconds since `start` and peak RSS of each process still there (last known else)."""
        for name, pid in self.pids.items():
            cpu = cpu_seconds(pid)
            rss = rss_peak_mb(pid)
            if cpu is not None:
                self.last[name] = {
                    "cpu_s": round(cpu - self.cpu_start.get(name, 0.0), 2),
                    "peak_rss_mb": None if rss is None else round(rss, 1),
                }
        return dict(self.last)


@dataclass
class Meter:
    """Reads EDF's feed and `pimms.cases.v1`; with `answer`, plays EDF: RECU then CLOS.

    A referral counts once (by its reference; a re-send or a reminder (`relance`) is not a new
    one); its time is the partner message's Kafka timestamp, its latency that minus its
    `dateDemande` (the need's `submitted_at` = `ce_time`). A `case.closed` counts once by case
    reference. It also reads intake's `pimms.intake.cases.v1`, so that the latency splits into
    one hop per service (`hop_latencies`).
    """

    bootstrap: str
    expected: int
    answer: bool = True
    partner_times: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    submitted: dict[str, float] = field(default_factory=dict)  # case reference -> need time
    closed: dict[str, float] = field(default_factory=dict)  # case reference -> closed time
    references: set[str] = field(default_factory=set)
    answers_sent: int = 0
    # case reference -> moment: "opened" (intake's case_opened), "requested" (the first
    # referral.requested), "delivered" (the first partner message); "need" is `submitted`
    marks: dict[str, dict[str, float]] = field(
        default_factory=lambda: {"opened": {}, "requested": {}, "delivered": {}}
    )

    @property
    def done(self) -> bool:
        """Every expected referral seen, and every case closed when EDF answers."""
        return len(self.references) >= self.expected and (
            not self.answer or len(self.closed) >= self.expected
        )

    def hop_latencies(self) -> dict[str, list[float]]:
        """Each service's share of the latency to the partner: from what the service before it
        published (the need itself for intake) to what it published, for the cases seen at both."""
        marks = {"need": self.submitted, **self.marks}
        hops: dict[str, list[float]] = {}
        for service, start, end in HOPS:
            begun, ended = marks[start], marks[end]
            hops[service] = [ended[ref] - begun[ref] for ref in ended if ref in begun]
        return hops

    def closing_latencies(self) -> list[float]:
        """From the need's time to its case's `case.closed`, for cases seen on both."""
        return [
            moment - self.submitted[reference]
            for reference, moment in self.closed.items()
            if reference in self.submitted
        ]

    async def run(self, stop: asyncio.Event, deadline: float) -> None:
        """Read until done, `stop` or the deadline (wall clock)."""
        consumer = await consumer_from_start(
            self.bootstrap, [EDF_FEED, topics.CASES, topics.INTAKE_CASES]
        )
        producer = None
        if self.answer:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
            await producer.start()
        try:
            while not self.done and not stop.is_set() and time.time() < deadline:
                batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
                for partition, records in batches.items():
                    if partition.topic == EDF_FEED:
                        await self._referrals(records, producer)
                    elif partition.topic == topics.INTAKE_CASES:
                        self._mark(records, {OPENED_BY_INTAKE: self.marks["opened"]})
                    else:
                        self._mark(
                            records, {CLOSED: self.closed, REQUESTED: self.marks["requested"]}
                        )
                if producer is not None:
                    await producer.flush()
        finally:
            if producer is not None:
                await producer.stop()
            await consumer.stop()

    async def _referrals(self, records: list[Any], producer: AIOKafkaProducer | None) -> None:
        for record in records:
            body = json.loads(record.value)
            reference = body.get("reference")
            if "relance" in body or "statut" in body or reference in self.references:
                continue
            self.references.add(reference)
            moment = _moment(record)
            self.partner_times.append(moment)
            with contextlib.suppress(KeyError, ValueError, TypeError):
                asked = datetime.fromisoformat(body["dateDemande"]).timestamp()
                self.latencies.append(moment - asked)
                self.submitted[body["dossierPimms"]] = asked
                self.marks["delivered"].setdefault(body["dossierPimms"], moment)
            if producer is not None:
                for answer in _edf_answers(reference):
                    await producer.send(
                        EDF_ANSWERS, key=reference.encode(), value=json.dumps(answer).encode()
                    )
                    self.answers_sent += 1

    def _mark(self, records: list[Any], kept: dict[bytes, dict[str, float]]) -> None:
        """The first moment of each case reference in events of the types `kept` names."""
        for record in records:
            moments = kept.get(dict(record.headers or ()).get("ce_type", b""))
            if moments is None:
                continue
            reference = json.loads(record.value).get("case_reference")
            if reference and reference not in moments:
                moments[reference] = _moment(record)


def _moment(record: Any) -> float:
    """A record's Kafka timestamp in seconds (now, if the broker gave none)."""
    return record.timestamp / 1000 if record.timestamp > 0 else time.time()


def _edf_answers(reference: str) -> list[dict[str, str]]:
    """EDF acknowledges (`RECU`), then closes (`CLOS` / `SOLUTION_TROUVEE`)."""
    now = datetime.now(UTC).isoformat()
    return [
        {"reference": reference, "statut": "RECU", "horodatage": now},
        {
            "reference": reference,
            "statut": "CLOS",
            "resultat": "SOLUTION_TROUVEE",
            "horodatage": now,
        },
    ]


OUTBOX_PENDING = text("SELECT count(*) FROM kit_outbox WHERE sent_at IS NULL")
EFFECTS_PENDING = text("SELECT count(*) FROM kit_effects WHERE done_at IS NULL")


@dataclass
class BacklogSampler:
    """Counts, every `interval` seconds, each service's unsent outbox rows and undone effects."""

    database_urls: dict[str, str]
    interval: float = 1.0
    outbox: list[dict[str, Any]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    _engines: dict[str, AsyncEngine] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event, start: float) -> None:
        """Sample until `stop` (times relative to `start`, wall clock)."""
        # One connection per service, kept open: a sample is one query, not a connection.
        self._engines = {
            name: create_async_engine(url, pool_size=1, max_overflow=0)
            for name, url in self.database_urls.items()
        }
        try:
            while not stop.is_set():
                moment = round(time.time() - start, 1)
                counts = await asyncio.gather(*(self._count(name) for name in self._engines))
                outbox: dict[str, Any] = {"t": moment}
                effects: dict[str, Any] = {"t": moment}
                for name, (pending, undone) in zip(self._engines, counts, strict=True):
                    outbox[name] = pending
                    effects[name] = undone
                outbox["total"] = _total(outbox)
                effects["total"] = _total(effects)
                self.outbox.append(outbox)
                self.effects.append(effects)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval)
        finally:
            for engine in self._engines.values():
                await engine.dispose()

    async def _count(self, name: str) -> tuple[int | None, int | None]:
        engine = self._engines[name]
        try:
            async with engine.connect() as connection:
                pending = (await connection.execute(OUTBOX_PENDING)).scalar_one()
                try:
                    undone = (await connection.execute(EFFECTS_PENDING)).scalar_one()
                except Exception:  # a service without effects
                    undone = None
                return int(pending), None if undone is None else int(undone)
        except Exception:  # not migrated yet, or busy: no sample
            return None, None

    def summary(self) -> dict[str, Any]:
        """The samples and each service's maximum."""
        return {
            "outbox_backlog": _with_max(self.outbox, self.interval),
            "effects_backlog": _with_max(self.effects, self.interval),
        }


def _total(sample: dict[str, Any]) -> int | None:
    """The sum over the services that answered; None when none did."""
    counts = [v for k, v in sample.items() if k != "t" and v is not None]
    return sum(counts) if counts else None


def _with_max(samples: list[dict[str, Any]], interval: float) -> dict[str, Any]:
    names = {k for s in samples for k in s if k not in {"t", "total"}}
    maxima = {
        name: max((s[name] for s in samples if s.get(name) is not None), default=None)
        for name in sorted(names)
    }
    return {"interval_s": interval, "max": maxima, "samples": samples}
