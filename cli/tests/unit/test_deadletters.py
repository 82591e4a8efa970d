"""Dead letter ids, filters, replay headers and the list's table, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pimms_cli.deadletter_commands import letter_view, letters_table
from pimms_cli.deadletters import (
    DeadLetter,
    DltId,
    DltIdError,
    Replay,
    last_replays,
    parse_since,
    replay_of,
    select,
)
from pimms_cli.terminal import render
from pimms_cli.trace import CaseRef

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def letter(
    topic: str = "pimms.partner.la-poste.responses.v1.dlt",
    offset: int = 0,
    *,
    reason: str = "unknown_status",
    failed_at: datetime = NOW,
    value: bytes = b"{}",
) -> DeadLetter:
    original = topic.removesuffix(".dlt")
    return DeadLetter(
        id=DltId(topic, 2, offset),
        key=b"ref-1",
        value=value,
        headers=(
            ("ce_id", b"e-1"),
            ("pimms_replay_of", b"older:0:0"),
            ("pimms_dlt_reason", reason.encode()),
            ("pimms_dlt_error", b"etat is not one of recue, acceptee"),
            ("pimms_dlt_service", b"partner-gateways"),
            ("pimms_dlt_original_topic", original.encode()),
            ("pimms_dlt_original_partition", b"1"),
            ("pimms_dlt_original_offset", b"41"),
            ("pimms_dlt_failed_at", failed_at.isoformat().encode()),
        ),
        timestamp_ms=0,
    )


def test_an_id_reads_back_what_it_names() -> None:
    parsed = DltId.parse("pimms.partner.la-poste.responses.v1.dlt:3:120")

    assert parsed == DltId("pimms.partner.la-poste.responses.v1.dlt", 3, 120)
    assert str(parsed) == "pimms.partner.la-poste.responses.v1.dlt:3:120"


@pytest.mark.parametrize(
    "text",
    ["", "pimms.intake.needs.v1.dlt:3", "pimms.intake.needs.v1:3:1", "x.dlt:a:1", "x.dlt:1:-2"],
)
def test_what_is_not_an_id_is_refused_with_the_expected_shape(text: str) -> None:
    with pytest.raises(DltIdError, match="dlt"):
        DltId.parse(text)


def test_a_replay_keeps_the_original_headers_drops_the_dead_letter_ones_and_is_marked() -> None:
    headers = letter().replay_headers(at=NOW)

    names = [name for name, _ in headers]
    assert names == ["ce_id", "pimms_replay_of", "pimms_replayed_at"]
    assert dict(headers)["pimms_replay_of"] == b"pimms.partner.la-poste.responses.v1.dlt:2:0"
    assert dict(headers)["pimms_replayed_at"] == b"2026-11-27T10:00:00.000+00:00"


def test_the_fields_of_a_dead_letter_come_from_its_headers() -> None:
    found = letter()

    assert found.reason == "unknown_status"
    assert found.service == "partner-gateways"
    assert found.original_topic == "pimms.partner.la-poste.responses.v1"
    assert found.original_position == "p1@41"
    assert found.failed_at == NOW


def test_filters_by_topic_either_name_reason_and_time() -> None:
    old = letter(offset=1, failed_at=NOW - timedelta(days=2))
    other = letter("pimms.intake.needs.v1.dlt", 2, reason="not_json")
    recent = letter(offset=3)
    everything = [recent, other, old]

    assert select(everything, topic="pimms.partner.la-poste.responses.v1", reason=None) == [
        old,
        recent,
    ]
    assert select(everything, topic="pimms.intake.needs.v1.dlt", reason=None) == [other]
    assert select(everything, topic=None, reason="not_json") == [other]
    since = parse_since("1d", now=NOW)
    assert select(everything, topic=None, reason=None, since=since) == [other, recent]


def test_since_takes_durations_and_dates() -> None:
    assert parse_since("30m", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_since("2026-11-26", now=NOW) == datetime(2026, 11, 26, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", now=NOW)


def test_a_replay_record_reads_back_and_the_latest_one_wins() -> None:
    first = replay_of(letter(), at=NOW, case_id="c-1")
    second = replay_of(letter(), at=NOW + timedelta(hours=1))

    assert Replay.from_json(first.to_json()) == first
    assert Replay.from_json(b"not json") is None
    assert last_replays([second, first]) == {str(letter().id): second}


def test_the_list_fits_100_columns_and_says_what_was_replayed() -> None:
    letters = [letter(offset=n) for n in range(3)]
    replays = last_replays([replay_of(letters[0], at=NOW)])
    refs = {"ref-1": CaseRef("c-1", "SAINTDENISREU-2026-1")}

    text = render(letters_table(letters, replays=replays, refs=refs), width=100)

    assert max(len(line) for line in text.splitlines()) <= 100
    assert "pimms.partner.la-poste.responses.v1.dlt:2:0" in text
    assert "SAINTDENISREU-2026-1" in text
    assert "unknown_status" in text
    assert text.count("11-27") == 4  # three failures, one replay


def test_show_masks_the_payload_and_fits_100_columns() -> None:
    payload = b'{"reference": "ref-1", "client": {"nom": "DUPONT", "telephone": "+33612345678"}}'

    text = render(letter_view(letter(value=payload), replay=None, ref=None), width=100)

    assert "DUPONT" not in text
    assert "+33612345678" not in text
    assert "ref-1" in text
    assert "unknown_status" in text
    assert max(len(line) for line in text.splitlines()) <= 100
