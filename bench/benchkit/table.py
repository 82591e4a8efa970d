"""The terminal table of a run's JSON result (pure: a dict in, text out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """A value as the table shows it: '-' for nothing, thousands separated, one decimal."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1 or value == 0 else f"{value:.2f}"
    return str(value)


def percent(value: float | None) -> str:
    """A ratio as `0.0123 (1.2 %)`, '-' for nothing."""
    if value is None:
        return "-"
    return f"{value:.4f} ({value * 100:.1f} %)"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns sized to their content; the first column left-aligned, the others right-aligned."""
    texts = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in texts:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))

    def line(values: Sequence[str]) -> str:
        parts = [
            value.ljust(widths[i]) if i == 0 else value.rjust(widths[i])
            for i, value in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in texts)])


def _flow_row(label: str, flow: dict[str, Any] | None) -> list[Any]:
    flow = flow or {}
    return [
        label,
        flow.get("count"),
        flow.get("first_s"),
        flow.get("last_s"),
        flow.get("overall_per_s"),
        flow.get("flowing_per_s"),
    ]


def render(result: dict[str, Any]) -> str:
    """The whole report: run, throughput, latency, processes, outbox backlog, baseline ratio."""
    run = result["run"]
    load = result.get("load", {})
    platform = result.get("platform", {})
    baseline = result.get("baseline") or {}
    mode = (
        f"steady {cell(run.get('rate'))} needs/s for {cell(run.get('duration_s'))} s"
        if run["mode"] == "rate"
        else "backlog (published before the services start)"
    )
    out: list[str] = [
        f"PIMMS end-to-end bench: {cell(run['needs'])} needs, {run['database']}, {mode}",
        f"machine: {run.get('cpus')} CPUs, load average at start {run.get('load_average')}, "
        f"speed probe {cell(run.get('speed_probe_s'))} s (lower is faster); "
        f"services ready after {cell(platform.get('ready_s'))} s"
        + ("" if run.get("complete", True) else "  ** INCOMPLETE **"),
        *(f"  ** {failure} **" for failure in run.get("failures", [])),
        *([f"  ** {run['note']} **"] if run.get("note") else []),
        "",
    ]
    out.append(
        format_table(
            ["throughput", "count", "first s", "last s", "overall/s", "flowing/s"],
            [
                [
                    "needs in (generator)",
                    load.get("published"),
                    0.0 if load.get("published") else None,
                    load.get("publish_seconds"),
                    load.get("in_per_s"),
                    None,
                ],
                _flow_row("-> partner feed (EDF)", platform.get("to_partner")),
                _flow_row("-> case.closed", platform.get("to_case_closed")),
                _flow_row(f"baseline relay ({baseline.get('hops', 3)} hops)", baseline.get("flow")),
            ],
        )
    )
    out.append(
        "  (times from "
        + ("the services' start" if run["mode"] == "backlog" else "the first need published")
        + "; overall = count / last s, flowing = from first to last message out)"
    )
    series = platform.get("series", {}).get("partner_per_second") or []
    if series:
        active = sum(1 for n in series if n)
        out.append(
            f"partner feed per second: at most {cell(max(series))}, messages in {active} of "
            f"{len(series)} seconds"
        )
    ratio = result.get("ratio") or {}
    out.append(
        f"platform / baseline: flowing {percent(ratio.get('flowing'))}, "
        f"overall {percent(ratio.get('overall'))}"
        + (f" ({ratio['note']})" if ratio.get("note") else "")
    )
    relays = baseline.get("processes") or {}
    if relays:
        out.append(
            "baseline CPU s: "
            + ", ".join(f"{name} {cell(f.get('cpu_s'))}" for name, f in relays.items())
        )
    out.append("")
    latency_rows = []
    hops = platform.get("latency_hops", {})
    for label, key in (
        ("need ce_time -> partner message", "latency_to_partner"),
        ("need ce_time -> case.closed", "latency_to_case_closed"),
    ):
        summary = platform.get(key)
        if summary:
            latency_rows.append(_latency_row(label, summary))
        if key == "latency_to_partner":
            latency_rows += [
                _latency_row(f"  of which {service}", hop)
                for service, hop in hops.items()
                if hop.get("count")
            ]
    if latency_rows:
        out.append(
            format_table(["latency", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"], latency_rows)
        )
        if hops:
            out.append(
                "  (of which: from what the service before published, or the need's ce_time, to"
                " what the service published; Kafka timestamps)"
            )
        out.append("")
    processes = result.get("processes", {})
    backlog = platform.get("outbox_backlog", {}).get("max", {})
    effects = platform.get("effects_backlog", {}).get("max", {})
    backlog_end = _last(platform.get("outbox_backlog", {}).get("samples"))
    effects_end = _last(platform.get("effects_backlog", {}).get("samples"))
    rows = [
        [
            name,
            figures.get("cpu_s"),
            figures.get("cpu_ms_per_need"),
            figures.get("peak_rss_mb"),
            backlog.get(name),
            backlog_end.get(name),
            effects.get(name),
            effects_end.get(name),
        ]
        for name, figures in processes.items()
    ]
    if rows:
        out.append(
            format_table(
                [
                    "process",
                    "CPU s",
                    "CPU ms/need",
                    "peak RSS MB",
                    "outbox max",
                    "at end",
                    "effects max",
                    "at end",
                ],
                rows,
            )
        )
    timeline = platform.get("outbox_backlog", {}).get("samples", [])
    if timeline:
        out.append("")
        out.append("outbox backlog over time (unsent rows, all services): " + sparkline(timeline))
    if platform.get("outboxes_empty_s") is not None:
        out.append(
            f"every outbox and effects queue empty at t={cell(platform['outboxes_empty_s'])}s"
        )
    if result.get("json_path"):
        out.append("")
        out.append(f"written {result['json_path']}")
    return "\n".join(out)


def _last(samples: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    return dict(samples[-1]) if samples else {}


def sparkline(samples: Sequence[dict[str, Any]], width: int = 12) -> str:
    """`t=0s 0 | t=5s 1,234 | ...`: at most `width` evenly spaced samples of the total backlog."""
    if not samples:
        return ""
    step = max(1, len(samples) // width)
    picked = list(samples[::step])
    if picked[-1] is not samples[-1]:
        picked.append(samples[-1])
    return " | ".join(f"t={cell(s['t'])}s {cell(s.get('total'))}" for s in picked)


def _latency_row(label: str, summary: dict[str, Any]) -> list[Any]:
    return [
        label,
        summary.get("count"),
        summary.get("p50_ms"),
        summary.get("p95_ms"),
        summary.get("p99_ms"),
        summary.get("max_ms"),
    ]
