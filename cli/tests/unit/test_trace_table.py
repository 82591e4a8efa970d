"""`pimms trace`'s timeline fits a 100-column terminal and keeps every service's name whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pimms_cli.terminal import render
from pimms_cli.trace import Step, timeline_table

AT = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)


def test_the_timeline_fits_100_columns() -> None:
    steps = [
        Step(AT, "intake", "consumed", "fr.pimms.need.submitted.v1",
             "pimms.intake.needs.v1/2@5", "handled"),
        Step(AT + timedelta(seconds=1), "partner-gateways", "emitted",
             "fr.pimms.partner.la-poste.referral", "pimms.partner.la-poste.referrals.v1",
             "la-poste referral; published 09:30:01.334"),
        Step(AT + timedelta(days=1), "support", "replayed", "", "pimms.partner.edf.responses.v1",
             "pimms.partner.edf.responses.v1.dlt:0:0 (impossible_transition)"),
    ]  # fmt: skip

    text = render(timeline_table(steps), width=100)

    assert max(len(line) for line in text.splitlines()) <= 100
    assert "partner-gateways" in text
    assert "-- 2026-11-27" in text
    assert "-- 2026-11-28" in text
    assert "09:30:00.000" in text
    assert "need.submitted.v1" in text
    assert "replayed" in text
