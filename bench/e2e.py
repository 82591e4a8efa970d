"""End-to-end bench: needs in, partner messages out, through every service as a real process.

    uv run python bench/e2e.py [--needs 20000 | --rate 100 --duration 60]
                               [--database sqlite|postgresql] [--no-baseline] [--no-partner]

On a Tansu broker of its own (memory storage) and fresh databases (SQLite files in a temporary
data directory, or new PostgreSQL databases at 127.0.0.1:5432 dropped afterwards):

1. Baseline: the same needs through three plain aiokafka relays (consume -> produce, like intake
   -> referrals -> partner-gateways), each its own process (see `benchkit/relay.py`).
2. The platform: intake, referrals, partner-gateways, notifications and reporting as processes
   (`pimms dev`'s launcher; their logs go to files only). Backlog mode (default) publishes the
   needs before the services start; `--rate R --duration S` starts them first and then publishes
   R needs per second for S seconds. A partner playing EDF acknowledges (`RECU`) and closes
   (`CLOS` / `SOLUTION_TROUVEE`) each referral, so cases close; the notifications service tells
   visitor and mediator all along.
3. The meter reads EDF's feed, `pimms.cases.v1` and `pimms.intake.cases.v1`: throughput (needs in ->
   partner messages out per second, and to `case.closed`), latency from each need's `ce_time` to its
   partner message (and to its `case.closed`), split into one hop per service, CPU seconds and peak
   RSS per process (and the PostgreSQL server's CPU on PostgreSQL), each service's outbox and
   effects backlog every second.

A table is printed; the JSON goes to `bench/results/e2e-<database>-<mode>-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from benchkit.databases import create_databases, drop_databases
from benchkit.load import Published, publish_at_rate, publish_backlog
from benchkit.observe import (
    BacklogSampler,
    Meter,
    ProcessWatch,
    ServerCpu,
    own_cpu_seconds,
    own_rss_peak_mb,
    speed_probe,
)
from benchkit.relay import run_baseline
from benchkit.stats import flow, latency_summary, per_second, ratio
from benchkit.table import render
from pimms_cli.config import platform_services
from pimms_cli.platform import DEV_KAFKA_TIMINGS, Platform
from pimms_contracts import topics
from pimms_contracts.partners import load_directory
from pimms_servicekit.kafka import ensure_topics
from pimms_servicekit.tansu import TansuBroker

RESULTS = Path(__file__).resolve().parent / "results"


def service_environment(log_level: str) -> dict[str, str]:
    """What `pimms dev` gives services on the embedded broker; the caller's environment wins."""
    wanted = {
        **DEV_KAFKA_TIMINGS,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu refuses idempotent producers
        "PIMMS_LOG_LEVEL": log_level,
    }
    return {key: value for key, value in wanted.items() if key not in os.environ}


async def bench(arguments: argparse.Namespace) -> dict[str, Any]:
    rate_mode = arguments.rate is not None
    needs = round(arguments.rate * arguments.duration) if rate_mode else arguments.needs
    data_dir = Path(tempfile.mkdtemp(prefix="pimms-e2e-bench-"))
    (data_dir / "logs").mkdir()
    env = service_environment(arguments.log_level)
    os.environ.update(env)  # the baseline relays read the same Kafka timings
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # processes start from cached bytecode
    result: dict[str, Any] = {
        "run": {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "rate" if rate_mode else "backlog",
            "rate": arguments.rate,
            "duration_s": arguments.duration if rate_mode else None,
            "needs": needs,
            "database": arguments.database,
            "partitions": arguments.partitions,
            "log_level": arguments.log_level,
            "kafka_fetch_max_wait_ms": int(os.environ.get("KAFKA_FETCH_MAX_WAIT_MS", "0")),
            "partner_answers": not arguments.no_partner,
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "speed_probe_s": speed_probe(),
            "data_dir": str(data_dir),
            "complete": False,
        }
    }
    broker = TansuBroker(log_file=data_dir / "logs" / "broker.log").start()
    bootstrap = broker.bootstrap_servers
    process = getattr(broker, "_process", None)  # TansuBroker keeps its Popen private
    broker_pid = process.pid if process is not None else None
    prefix = f"pimms_bench_{uuid.uuid4().hex[:8]}"
    specs = platform_services()
    urls: dict[str, str] = {}
    platform: Platform | None = None
    try:
        if arguments.database == "postgresql":
            urls = await create_databases(prefix, [s.name for s in specs])
        database_urls = {s.name: urls.get(s.name) or s.database_url(data_dir) for s in specs}
        directory = load_directory()
        await ensure_topics(
            bootstrap,
            topics.platform_topics(directory.kafka_partner_ids()),
            partitions=arguments.partitions,
        )
        if not arguments.no_baseline:
            count = arguments.baseline_needs or max(needs, 20_000)
            say(f"baseline: {count:,} needs through three plain aiokafka relays ...")
            result["baseline"] = await run_baseline(
                bootstrap,
                count,
                timeout=arguments.timeout,
                extra_pids={"broker (tansu)": broker_pid} if broker_pid else {},
            )
        platform = Platform(
            data_dir=data_dir,
            bootstrap=bootstrap,
            echo=False,
            database_urls=urls,
            extra_env=env,
            services=specs,
        )
        await run_platform(
            arguments,
            platform=platform,
            bootstrap=bootstrap,
            needs=needs,
            database_urls=database_urls,
            result=result,
            broker_pid=broker_pid,
        )
    finally:
        if platform is not None:
            with contextlib.suppress(Exception):
                await platform.stop()
        broker.stop()
        if urls:
            await drop_databases(prefix, [s.name for s in specs])
    if result["run"]["complete"] and not arguments.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        result["run"]["data_dir"] = None
    return result


async def run_platform(
    arguments: argparse.Namespace,
    *,
    platform: Platform,
    bootstrap: str,
    needs: int,
    database_urls: dict[str, str],
    result: dict[str, Any],
    broker_pid: int | None,
) -> None:
    rate_mode = arguments.rate is not None
    published = Published()
    if not rate_mode:
        say(f"publishing a backlog of {needs:,} needs ...")
        published = await publish_backlog(bootstrap, needs)
    say(f"starting the services on {arguments.database} (logs: {platform.data_dir / 'logs'}) ...")
    started = time.time()
    await platform.start()
    pids = {name: r.process.pid for name, r in platform.running.items()}
    if broker_pid is not None:
        pids["broker (tansu)"] = broker_pid
    watch = ProcessWatch(pids)
    watch.start()
    server = ServerCpu() if arguments.database == "postgresql" else None
    if server is not None:
        server.start()
    bench_cpu = own_cpu_seconds()
    meter = Meter(bootstrap, needs, answer=not arguments.no_partner)
    sampler = BacklogSampler(database_urls, interval=arguments.interval)
    stop = asyncio.Event()
    ready = asyncio.create_task(platform.wait_ready(timeout=180))
    ready_s: float | None = None
    if rate_mode:
        await ready
        ready_s = time.time() - started
        say(f"ready after {ready_s:.1f} s; {arguments.rate:g} needs/s for {arguments.duration:g} s")
        watch.start()
        if server is not None:
            server.start()
        bench_cpu = own_cpu_seconds()
        started = time.time()
    sampling = asyncio.create_task(sampler.run(stop, started))
    metering = asyncio.create_task(meter.run(stop, started + arguments.timeout))
    failures: list[str] = []
    watching = asyncio.create_task(watchdog(platform, stop, failures))
    if rate_mode:
        published = await publish_at_rate(bootstrap, arguments.rate, arguments.duration)
    else:
        try:
            await ready
            ready_s = time.time() - started
        except RuntimeError as exc:
            failures.append(str(exc))
            ready_s = None
    await metering
    finished = time.time()
    watching.cancel()
    say(
        f"{len(meter.references):,}/{needs:,} referrals on EDF's feed, "
        f"{len(meter.closed):,} cases closed; waiting for the outboxes to empty ..."
    )
    drained_s = None if failures else await wait_outboxes_empty(sampler, limit=arguments.settle)
    stop.set()
    await sampling
    processes = watch.read()
    if server is not None:
        processes["postgresql (server)"] = server.read()
    processes["bench (generator, meter, EDF)"] = {
        "cpu_s": round(own_cpu_seconds() - bench_cpu, 2),
        "peak_rss_mb": round(own_rss_peak_mb(), 1),
    }
    for figures in processes.values():
        cpu = figures.get("cpu_s")
        figures["cpu_ms_per_need"] = None if cpu is None else round(1000 * cpu / needs, 3)
    complete = meter.done and not failures
    result["run"]["complete"] = complete and result.get("baseline", {}).get("complete", True)
    result["load"] = {
        "published": published.count,
        "publish_seconds": round(published.seconds, 2),
        "in_per_s": round(published.count / published.seconds, 1) if published.seconds else None,
    }
    result["platform"] = {
        "ready_s": None if ready_s is None else round(ready_s, 2),
        "to_partner": flow(meter.partner_times, started),
        "to_case_closed": flow(list(meter.closed.values()), started),
        "latency_to_partner": latency_summary(meter.latencies),
        "latency_to_case_closed": latency_summary(meter.closing_latencies()),
        "latency_hops": {
            service: latency_summary(seconds) for service, seconds in meter.hop_latencies().items()
        },
        "outboxes_empty_s": drained_s,
        "measured_s": round(finished - started, 2),
        "edf_answers_sent": meter.answers_sent,
        "series": {
            "in_per_second": per_second([t for t in published.wall_times if t >= started], started),
            "partner_per_second": per_second(meter.partner_times, started),
            "closed_per_second": per_second(list(meter.closed.values()), started),
        },
        **sampler.summary(),
    }
    result["processes"] = processes
    baseline = result.get("baseline")
    if baseline:
        ours, theirs = result["platform"]["to_partner"], baseline["flow"]
        result["ratio"] = {
            "flowing": ratio(ours["flowing_per_s"], theirs["flowing_per_s"]),
            "overall": ratio(ours["overall_per_s"], theirs["overall_per_s"]),
            "note": (
                "steady load: the platform is offered only --rate, the baseline a backlog"
                if rate_mode
                else "both drain a backlog"
            ),
        }
    result["run"]["cpu_counted_from"] = (
        "the first need published" if rate_mode else "the services' spawn (start-up included)"
    )
    if failures:
        result["run"]["failures"] = failures
    elif not complete:
        result["run"]["note"] = f"timed out after {arguments.timeout:g} s"


async def watchdog(platform: Platform, stop: asyncio.Event, failures: list[str]) -> None:
    """Stop the run when a service process exits (its log says why)."""
    while not stop.is_set():
        for name, running in platform.running.items():
            if running.process.returncode is not None:
                failures.append(
                    f"{name} exited with code {running.process.returncode}; see "
                    f"{platform.data_dir / 'logs' / (name + '.log')}"
                )
                stop.set()
                return
        await asyncio.sleep(0.5)


async def wait_outboxes_empty(sampler: BacklogSampler, *, limit: float) -> float | None:
    """The time (s, as the sampler counts) of a sample showing every outbox and effects queue
    empty; None if none did within `limit` seconds."""
    deadline = time.time() + limit
    while time.time() < deadline:
        if sampler.outbox and sampler.effects:
            last_outbox, last_effects = sampler.outbox[-1], sampler.effects[-1]
            answered = all(v is not None for k, v in last_outbox.items() if k != "t")
            if answered and last_outbox["total"] == 0 and not last_effects["total"]:
                return float(last_outbox["t"])
        await asyncio.sleep(sampler.interval / 2)
    return None


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--needs", type=int, default=20_000, help="backlog size (backlog mode)")
    parser.add_argument("--rate", type=float, help="needs per second (steady mode)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of steady load")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--baseline-needs", type=int, help="default: max(needs, 20000)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-partner", action="store_true", help="EDF does not answer")
    parser.add_argument("--log-level", default="INFO", help="the services' PIMMS_LOG_LEVEL")
    parser.add_argument("--interval", type=float, default=1.0, help="outbox sampling period (s)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after (s)")
    parser.add_argument(
        "--settle", type=float, default=30, help="wait at most this for outboxes to empty (s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs, db)")
    parser.add_argument("--out", type=Path, help="JSON path (default under bench/results/)")
    arguments = parser.parse_args(argv)
    if arguments.rate is not None and arguments.rate <= 0:
        parser.error("--rate must be positive")
    return arguments


def quiet_logs() -> None:
    """This process's own structlog lines (topics created...) stay off the terminal."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    arguments = parse(argv)
    quiet_logs()
    result = asyncio.run(bench(arguments))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = f"e2e-{arguments.database}-{result['run']['mode']}-{stamp}.json"
    out = arguments.out or RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    result["json_path"] = str(out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0 if result["run"]["complete"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
