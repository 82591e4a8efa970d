"""One case's log lines from every service's file, merged in time order."""

from __future__ import annotations

import json
from pathlib import Path

from pimms_cli.logs import CaseFilter, LogFiles, case_lines, merge, parse_line, readable
from pimms_cli.terminal import render


def line(ts: str, service: str, event: str, **fields: object) -> str:
    return json.dumps({**fields, "event": event, "level": "info", "ts": ts, "service": service})


def write(path: Path, *lines: str) -> None:
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def test_lines_of_two_services_are_merged_in_time_order(tmp_path: Path) -> None:
    write(
        tmp_path / "intake.log",
        line("2026-11-27T09:00:00.100Z", "intake", "case.opened", case_id="c1"),
        "Traceback (most recent call last):",
        line("2026-11-27T09:00:00.300Z", "intake", "case.closed", case_id="c1"),
    )
    write(
        tmp_path / "referrals.log",
        line("2026-11-27T09:00:00.200Z", "referrals", "referral.requested", case_id="c1"),
    )

    lines = merge(LogFiles(tmp_path).read_new())

    assert [x.event for x in lines] == ["case.opened", "referral.requested", "case.closed"]


def test_a_reference_finds_its_case_and_lines_that_only_share_its_correlation() -> None:
    raw = [
        line("2026-11-27T09:00:00.1Z", "intake", "case.opened", case_id="c1",
             case_reference="LYON8-2026-000001", correlation_id="k1"),
        line("2026-11-27T09:00:00.2Z", "partner-gateways", "referral.transmitted",
             correlation_id="k1", referral_id="r1"),
        line("2026-11-27T09:00:00.3Z", "intake", "case.opened", case_id="c2",
             case_reference="LYON8-2026-000002", correlation_id="k2"),
        line("2026-11-27T09:00:00.4Z", "notifications", "notification.sent", case_id="c1"),
    ]  # fmt: skip
    parsed = [p for x in raw if (p := parse_line(x, service="x")) is not None]

    case = CaseFilter("LYON8-2026-000001")
    found = case_lines(parsed, case)

    assert case.case_ids == {"c1"}
    assert [(x.service, x.event) for x in found] == [
        ("intake", "case.opened"),
        ("partner-gateways", "referral.transmitted"),
        ("notifications", "notification.sent"),
    ]


def test_a_submission_id_finds_a_refused_submission_without_a_case() -> None:
    parsed = parse_line(
        line("2026-11-27T09:00:00.1Z", "intake", "need.rejected", submission_id="s-9"),
        service="intake",
    )
    assert parsed is not None

    assert case_lines([parsed], CaseFilter("s-9")) == [parsed]
    assert case_lines([parsed], CaseFilter("s-10")) == []


def test_a_line_being_written_is_read_once_complete(tmp_path: Path) -> None:
    path = tmp_path / "intake.log"
    files = LogFiles(tmp_path)
    first = line("2026-11-27T09:00:00.1Z", "intake", "a", case_id="c1")
    second = line("2026-11-27T09:00:00.2Z", "intake", "b", case_id="c1")
    path.write_text(first + "\n" + second[:20], encoding="utf-8")

    assert [x.event for x in files.read_new()] == ["a"]
    with path.open("a", encoding="utf-8") as file:
        file.write(second[20:] + "\n")
    assert [x.event for x in files.read_new()] == ["b"]
    assert files.read_new() == []


def test_a_readable_line_has_time_service_level_event_and_key_fields() -> None:
    parsed = parse_line(
        line("2026-11-27T09:00:00.123Z", "referrals", "referral.requested", case_id="c1",
             partner_id="edf", batch_size=3, correlation_id="k1"),
        service="referrals",
    )  # fmt: skip
    assert parsed is not None

    text = render(readable(parsed)).strip()

    assert text == "10:00:00.123 referrals        INFO    referral.requested partner_id=edf"
    assert parsed.to_json()["timestamp"] == "2026-11-27T09:00:00.123000+00:00"
