"""`pimms dead-letters` on a real broker and `pimms logs` on real files, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from pimms_servicekit.kafka import ensure_topics
from pimms_servicekit.testing import KafkaEndpoint, TopicWatcher, produce

pytestmark = [pytest.mark.integration]

ORIGINAL = "pimms.partner.edf.responses.v1"
DLT = f"{ORIGINAL}.dlt"
REPLAYS = "pimms.ops.replays.v1"


async def pimms(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pimms_cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, output.decode()


def user_env(tmp_path: Path, bootstrap: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env["PIMMS_DATA_DIR"] = str(tmp_path)
    env["COLUMNS"] = "100"
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


async def test_a_dead_letter_is_listed_shown_masked_and_replayed(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    await ensure_topics(kafka.bootstrap_servers, [ORIGINAL, DLT], partitions=1)
    payload = {
        "reference": "ref-77",
        "statut": "EGAREE",
        "commentaire": "Mme Marie Dupont, 06 12 34 56 78, marie.dupont@example.org",
        "horodatage": "2026-11-27T09:30:00+01:00",
    }
    await produce(
        kafka.bootstrap_servers,
        [
            (
                DLT,
                b"ref-77",
                json.dumps(payload).encode(),
                [
                    ("x-partner-trace", b"t-1"),
                    ("pimms_dlt_reason", b"unknown_status"),
                    ("pimms_dlt_error", b"statut (not a code word) is not one of RECU, ..."),
                    ("pimms_dlt_service", b"partner-gateways"),
                    ("pimms_dlt_original_topic", ORIGINAL.encode()),
                    ("pimms_dlt_original_partition", b"0"),
                    ("pimms_dlt_original_offset", b"12"),
                    ("pimms_dlt_failed_at", b"2026-11-27T08:31:00.000+00:00"),
                ],
            )
        ],
    )
    env = user_env(tmp_path, kafka.bootstrap_servers)
    dlt_id = f"{DLT}:0:0"

    code, listed = await pimms("dead-letters", "list", env=env)
    assert code == 0, listed
    assert dlt_id in listed
    assert "unknown_status" in listed
    assert "partner-gateways" in listed
    assert "p0@12" in listed
    assert max(len(x) for x in listed.splitlines()) <= 100

    code, shown = await pimms("dead-letters", "show", dlt_id, env=env)
    assert code == 0, shown
    assert "unknown_status" in shown
    assert "ref-77" in shown
    assert "EGAREE" in shown
    for personal in ("Marie", "Dupont", "06 12 34 56 78", "marie.dupont@example.org"):
        assert personal not in shown

    code, replayed = await pimms("dead-letters", "replay", dlt_id, env=env)
    assert code == 0, replayed
    assert f"replayed {dlt_id} -> {ORIGINAL}" in replayed

    watcher = await TopicWatcher(kafka.bootstrap_servers, [ORIGINAL, REPLAYS]).start()
    try:
        await watcher.wait_for(
            lambda _: bool(watcher.of(ORIGINAL)) and bool(watcher.of(REPLAYS)),
            what="the replayed record and its replay record",
        )
    finally:
        await watcher.stop()
    (again,) = watcher.of(ORIGINAL)
    assert again.key == "ref-77"
    assert again.json == payload
    assert again.headers["pimms_replay_of"] == dlt_id
    assert again.headers["x-partner-trace"] == "t-1"
    assert "pimms_replayed_at" in again.headers
    assert not [h for h in again.headers if h.startswith("pimms_dlt_")]
    (record,) = watcher.of(REPLAYS)
    assert record.key == dlt_id
    assert record.json["original_topic"] == ORIGINAL

    code, as_json = await pimms("dead-letters", "list", "--json", "--reason", "unknown_status",
                                env=env)  # fmt: skip
    assert code == 0, as_json
    (row,) = [json.loads(x) for x in as_json.splitlines()]
    assert row["id"] == dlt_id
    assert row["replayed_at"] is not None

    code, nothing = await pimms("dead-letters", "replay", "--reason", "unknown_status", env=env)
    assert code == 0, nothing
    assert "Nothing to replay" in nothing

    code, missing = await pimms("dead-letters", "show", f"{DLT}:0:99", env=env)
    assert code == 1
    assert "No dead letter" in missing


def _line(ts: str, service: str, event: str, **fields: str) -> str:
    return json.dumps({**fields, "event": event, "level": "info", "ts": ts, "service": service})


async def test_logs_merges_two_services_files_in_time_order(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "intake.log").write_text(
        "\n".join(
            [
                _line("2026-11-27T09:00:00.100Z", "intake", "case.opened", case_id="c1",
                      case_reference="LYON8-2026-000001", submission_id="s1"),
                _line("2026-11-27T09:00:00.150Z", "intake", "case.opened", case_id="c2"),
                _line("2026-11-27T09:00:00.400Z", "intake", "case.closed", case_id="c1"),
            ]
        ) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    (logs / "referrals.log").write_text(
        _line("2026-11-27T09:00:00.200Z", "referrals", "referral.requested", case_id="c1",
              partner_id="edf") + "\n",
        encoding="utf-8",
    )  # fmt: skip
    env = user_env(tmp_path)

    code, text = await pimms("logs", "LYON8-2026-000001", env=env)
    assert code == 0, text
    events = [x.split()[3] for x in text.splitlines() if x[:2].isdigit()]
    assert events == ["case.opened", "referral.requested", "case.closed"]

    code, as_json = await pimms("logs", "s1", "--json", env=env)
    assert code == 0, as_json
    rows = [json.loads(x) for x in as_json.splitlines()]
    assert [(r["service"], r["event"]) for r in rows] == [
        ("intake", "case.opened"),
        ("referrals", "referral.requested"),
        ("intake", "case.closed"),
    ]
    assert all({"timestamp", "service", "level", "event"} <= set(r) for r in rows)

    code, unknown = await pimms("logs", "NOPE-2026-000000", env=env)
    assert code == 1
    assert "No log line" in unknown
