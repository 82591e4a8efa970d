"""Logs are JSON events bound to the case, and personal data never reaches them."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pimms_servicekit.logging import (
    REDACTED,
    bound_context,
    configure_logging,
    get_logger,
    redact,
    scrub_text,
)
from pydantic import BaseModel, ValidationError, field_validator


@pytest.fixture
def lines() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(service="test", level="DEBUG", stream=stream)
    return stream


def read(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_lines_are_json_with_the_bound_case(lines: io.StringIO) -> None:
    with bound_context(case_id="c-1", correlation_id="k-1", event_id=None):
        get_logger().info("referral.transmitted", partner_id="edf")
    [line] = read(lines)
    assert line["event"] == "referral.transmitted"
    assert line["case_id"] == "c-1"
    assert line["correlation_id"] == "k-1"
    assert line["service"] == "test"
    assert "event_id" not in line  # None values are dropped


def test_personal_keys_are_replaced(lines: io.StringIO) -> None:
    get_logger().info(
        "oops",
        first_name="Marie",
        phone="+33612345678",
        visitor={"last_name": "Dupont", "postal_code": "69008"},
        summary="Facture impayée",
        case_reference="LYON8-2026-000001",
    )
    [line] = read(lines)
    text = json.dumps(line, ensure_ascii=False)
    for secret in ("Marie", "+33612345678", "Dupont", "69008", "Facture"):
        assert secret not in text
    assert line["case_reference"] == "LYON8-2026-000001"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("mail marie.dupont@example.org now", "marie.dupont@example.org"),
        ("call +33612345678 or 06 12 34 56 78", "+33612345678"),
        ("call +33612345678 or 06 12 34 56 78", "06 12 34 56 78"),
        ("input_value='Marie Dupont', input_type=str", "Marie Dupont"),
        ("[SQL: INSERT ...]\n[parameters: ('Marie', 'Dupont')]\n(Background", "Dupont"),
    ],
)
def test_free_text_is_scrubbed(text: str, hidden: str) -> None:
    assert hidden not in scrub_text(text)


def test_ids_offsets_and_dates_are_left_alone() -> None:
    text = (
        "case 0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11 at offset 123456789 on 2026-11-27T09:30:00+01:00"
    )
    assert scrub_text(text) == text


@pytest.mark.parametrize(
    "clock",
    [
        "2026-11-27T09:30:08.123456+00:00",
        "2026-11-27T09:30:00.000000+00:00",
        "2026-11-27 09:30:08.12345678",
        "stalled for 0.12345678 s",
    ],
)
def test_clock_times_and_decimals_are_left_alone(clock: str) -> None:
    assert scrub_text(clock) == clock


def test_a_steered_clock_is_logged_whole_while_phones_next_to_it_are_not(
    lines: io.StringIO,
) -> None:
    anchor = "2026-11-27T23:07:08.123456+00:00"
    get_logger().warning(
        "clock.steered",
        time_anchor=anchor,
        time_start="2026-11-27T08:00:00+00:00",
        note=f"anchored {anchor}, call 06 12 34 56 78 or +33 6 12 34 56 78 or 06.12.34.56.78",
    )
    [line] = read(lines)
    assert line["time_anchor"] == anchor
    assert line["note"] == f"anchored {anchor}, call {REDACTED} or {REDACTED} or {REDACTED}"


def test_exceptions_are_scrubbed_too(lines: io.StringIO) -> None:
    class Person(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def short(cls, value: str) -> str:
            raise ValueError("too long")

    who = (
        "Marie " + "Dupont"
    )  # a traceback shows source lines, not values: keep it out of the source
    try:
        Person(name=who)
    except ValidationError:
        get_logger().exception("failed")
    logging.getLogger("aiokafka").warning("peer marie@example.org said +33612345678")
    text = lines.getvalue()
    assert "Marie Dupont" not in text
    assert "marie@example.org" not in text
    assert "+33612345678" not in text
    assert REDACTED in text


def test_redact_keeps_structure() -> None:
    assert redact({"a": [{"email": "x@y.fr"}], "n": 3}) == {"a": [{"email": REDACTED}], "n": 3}
