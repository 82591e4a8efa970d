"""SMS length and quiet hours: what a visitor's phone receives, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pimms_notifications.domain.quiet_hours import PARIS, in_quiet_hours, sms_send_time
from pimms_notifications.domain.sms import sms_encoding, sms_length, sms_text


def test_plain_french_with_gsm_accents_is_gsm7_and_160_characters_make_one_sms() -> None:
    text = "é" * 160
    assert sms_length(text).encoding == "gsm7"
    assert sms_length(text).segments == 1
    assert sms_length(text + "a").segments == 2  # 161 septets: two parts of at most 153


def test_gsm7_segments_are_153_septets() -> None:
    assert sms_length("a" * 306).segments == 2
    assert sms_length("a" * 307).segments == 3


def test_the_extension_table_costs_two_septets_and_never_splits() -> None:
    assert sms_length("€" * 80).units == 160
    assert sms_length("€" * 80).segments == 1
    # 152 septets then a euro sign: it cannot be cut in two, so it opens the second part.
    length = sms_length("a" * 152 + "€" + "a" * 152)
    assert length.units == 306
    assert length.segments == 3


def test_arabic_and_emoji_are_ucs2_70_then_67() -> None:
    assert sms_length("م" * 70).segments == 1
    assert sms_length("م" * 71).segments == 2
    assert sms_length("م" * 134).segments == 2
    assert sms_length("م" * 135).segments == 3
    emoji = sms_length("🙂" * 35)
    assert (emoji.encoding, emoji.units, emoji.segments) == ("ucs2", 70, 1)


def test_a_surrogate_pair_is_never_cut_between_segments() -> None:
    assert sms_length("a" * 66 + "🙂" + "a" * 66).segments == 3
    assert sms_length("a" * 65 + "🙂" + "a" * 67).segments == 2


def test_french_accents_outside_gsm7_are_folded_so_the_sms_stays_gsm7() -> None:
    text = (
        "PIMMS : votre demande est reçue, la Préfecture du Rhône s\u2019en occupe\u2026 "
        "à bientôt ! "
    )
    sent = sms_text(text)
    assert (
        sent == "PIMMS : votre demande est recue, la Préfecture du Rhone s'en occupe... à bientot !"
    )
    assert sms_encoding(text) == "ucs2"
    assert sms_encoding(sent) == "gsm7"


def test_arabic_is_sent_as_written() -> None:
    text = "PIMMS: مرحبًا، تم إغلاق ملفك. Préfecture du Rhône"
    assert sms_text(text) == text
    assert sms_encoding(sms_text(text)) == "ucs2"


def test_an_empty_text_is_no_sms() -> None:
    assert sms_length("").segments == 0


def paris(day: int, hour: int, minute: int = 0, *, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (paris(27, 22, 30), paris(28, 8)),
        (paris(27, 21, 0), paris(28, 8)),
        (paris(28, 3, 15), paris(28, 8)),
        (paris(28, 7, 59), paris(28, 8)),
    ],
)
def test_an_sms_due_in_quiet_hours_goes_at_8(now: datetime, expected: datetime) -> None:
    sent = sms_send_time(now.astimezone(UTC))
    assert sent == expected
    assert sent.tzinfo == UTC


@pytest.mark.parametrize("now", [paris(27, 8, 0), paris(27, 12, 0), paris(27, 20, 59)])
def test_an_sms_due_in_the_day_goes_at_once(now: datetime) -> None:
    assert not in_quiet_hours(now)
    assert sms_send_time(now) == now


def test_quiet_hours_follow_paris_time_across_daylight_saving() -> None:
    # 2026-10-25: clocks go back at 03:00. 22:30 the evening before -> 08:00 CET, 07:00 UTC.
    evening = paris(24, 22, 30, month=10)
    assert sms_send_time(evening).astimezone(UTC) == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)
    # In summer, 08:00 Paris is 06:00 UTC; 19:30 UTC is 21:30 Paris, so quiet.
    summer = datetime(2026, 7, 1, 19, 30, tzinfo=UTC)
    assert sms_send_time(summer) == datetime(2026, 7, 2, 6, 0, tzinfo=UTC)
    assert sms_send_time(summer) - summer == timedelta(hours=10, minutes=30)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sms_send_time(datetime(2026, 11, 27, 22, 30))
