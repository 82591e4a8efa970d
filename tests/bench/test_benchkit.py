"""The bench's figures and table: percentiles, rates, per-second series, rendering (no broker)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from benchkit.observe import Meter, ServerCpu, processes_named
from benchkit.stats import flow, latency_summary, per_second, percentile, ratio
from benchkit.table import cell, format_table, percent, render


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds() -> None:
    summary = latency_summary([0.010, 0.020, 0.030, 0.040, 1.0])
    assert summary == {
        "count": 5,
        "p50_ms": 30.0,
        "p95_ms": pytest.approx(808.0),
        "p99_ms": pytest.approx(961.6),
        "max_ms": 1000.0,
    }
    assert latency_summary([])["p99_ms"] is None


def test_flow_counts_from_the_start_and_while_flowing() -> None:
    start = 1000.0
    figures = flow([1010.0, 1011.0, 1012.0, 1020.0], start)
    assert figures["count"] == 4
    assert figures["first_s"] == 10.0
    assert figures["last_s"] == 20.0
    assert figures["overall_per_s"] == 0.2  # 4 in 20 s
    assert figures["flowing_per_s"] == 0.3  # 3 intervals in 10 s
    assert flow([], start)["overall_per_s"] is None
    assert flow([1005.0], start)["flowing_per_s"] is None


def test_per_second_buckets_and_ratio() -> None:
    assert per_second([10.0, 10.5, 11.2, 13.9], 10.0) == [2, 1, 0, 1]
    assert per_second([], 0.0) == []
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(None, 200.0) is None
    assert ratio(50.0, 0.0) is None


def test_cells_and_table_alignment() -> None:
    assert cell(None) == "-"
    assert cell(12345) == "12,345"
    assert cell(1234.56) == "1,234.6"
    assert cell(0.123) == "0.12"
    assert percent(0.0123) == "0.0123 (1.2 %)"
    table = format_table(["name", "n"], [["intake", 5], ["referrals", 12345]]).splitlines()
    assert table[0] == "name            n"
    assert table[1] == "---------  ------"
    assert table[2] == "intake          5"
    assert table[3] == "referrals  12,345"


def test_render_shows_every_section() -> None:
    result = {
        "run": {
            "mode": "rate",
            "rate": 100.0,
            "duration_s": 60.0,
            "needs": 6000,
            "database": "postgresql",
            "cpus": 2,
            "load_average": [1.0, 1.0, 1.0],
            "speed_probe_s": 0.61,
            "complete": True,
        },
        "load": {"published": 6000, "publish_seconds": 60.0, "in_per_s": 100.0},
        "platform": {
            "ready_s": 9.5,
            "to_partner": flow([100.0 + i / 100 for i in range(6000)], 100.0),
            "to_case_closed": flow([101.0 + i / 100 for i in range(6000)], 100.0),
            "latency_to_partner": latency_summary([0.05] * 99 + [0.2]),
            "series": {"partner_per_second": [0, 40, 0, 60]},
            "latency_to_case_closed": latency_summary([0.5] * 100),
            "latency_hops": {
                "intake": latency_summary([0.02] * 100),
                "referrals": latency_summary([0.03] * 100),
                "partner-gateways": latency_summary([]),
            },
            "outbox_backlog": {
                "max": {"intake": 3},
                "samples": [
                    {"t": 0.0, "intake": 0, "total": 0},
                    {"t": 1.0, "intake": 3, "total": 3},
                ],
            },
            "effects_backlog": {"max": {"notifications": 7}, "samples": []},
        },
        "processes": {
            "intake": {"cpu_s": 30.0, "cpu_ms_per_need": 5.0, "peak_rss_mb": 120.5},
            "notifications": {"cpu_s": 12.0, "cpu_ms_per_need": 2.0, "peak_rss_mb": 110.0},
        },
        "baseline": {
            "hops": 3,
            "flow": {"count": 20000, "overall_per_s": 4000.0, "flowing_per_s": 10000.0},
            "processes": {"relay-0": {"cpu_s": 2.5}},
        },
        "ratio": {"flowing": 0.01, "overall": 0.025},
        "json_path": "bench/results/x.json",
    }
    text = render(result)
    assert "6,000 needs, postgresql, steady 100.0 needs/s for 60.0 s" in text
    assert "baseline relay (3 hops)" in text
    assert "speed probe 0.61 s (lower is faster)" in text
    assert "platform / baseline: flowing 0.0100 (1.0 %), overall 0.0250 (2.5 %)" in text
    lines = text.splitlines()
    partner = next(i for i, line in enumerate(lines) if "need ce_time -> partner" in line)
    assert lines[partner + 1].split()[:4] == ["of", "which", "intake", "100"]
    assert lines[partner + 1].split()[4] == "20.0"
    assert lines[partner + 2].split()[:3] == ["of", "which", "referrals"]
    assert "need ce_time -> case.closed" in lines[partner + 3]  # no row for a hop never seen
    assert "partner feed per second: at most 60, messages in 2 of 4 seconds" in text
    assert "INCOMPLETE" not in text
    intake = next(line for line in text.splitlines() if line.startswith("intake"))
    assert intake.split() == ["intake", "30.0", "5.0", "120.5", "3", "3", "-", "-"]
    notifications = next(line for line in text.splitlines() if line.startswith("notifications"))
    assert notifications.split()[-2:] == ["7", "-"]
    assert "t=1.0s 3" in text
    assert text.rstrip().endswith("written bench/results/x.json")
    result["run"]["complete"] = False
    assert "INCOMPLETE" in render(result)


def test_the_meter_splits_the_latency_into_one_hop_per_service() -> None:
    meter = Meter("unused:9092", expected=2)
    meter.submitted.update({"LYON8-1": 10.0, "LYON8-2": 20.0})
    meter.marks["opened"].update({"LYON8-1": 10.1, "LYON8-2": 20.3})
    meter.marks["requested"].update({"LYON8-1": 10.3})  # case 2 not routed yet
    meter.marks["delivered"].update({"LYON8-1": 10.6})
    hops = {
        service: [round(s, 3) for s in seconds]
        for service, seconds in meter.hop_latencies().items()
    }
    assert hops == {"intake": [0.1, 0.3], "referrals": [0.2], "partner-gateways": [0.3]}


def test_server_cpu_counts_every_process_of_a_command() -> None:
    command = Path("/proc/self/comm").read_text().strip()
    assert os.getpid() in processes_named(command)
    server = ServerCpu(command=command)
    server.start()
    began = time.process_time()
    while time.process_time() - began < 0.2:  # spend CPU in a process of that command
        pass
    figures = server.read()
    assert figures["peak_rss_mb"] is None
    assert figures["cpu_s"] is not None
    assert figures["cpu_s"] >= 0.1
