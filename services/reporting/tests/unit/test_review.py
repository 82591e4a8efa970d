"""The review's rules without I/O: how a referral's story is folded, counted, hidden and written."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pimms_reporting.domain.facts import (
    AssessmentFact,
    CaseFacts,
    Facts,
    NotificationFact,
    ReferralChange,
    ReferralFacts,
    apply_change,
)
from pimms_reporting.domain.figures import compute_review, percentile, suppress_small
from pimms_reporting.domain.formats import comments_csv, review_csv, review_json
from pimms_reporting.domain.html import review_html

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def story(*steps: tuple[str, float] | tuple[str, float, str]) -> ReferralFacts:
    """Fold lifecycle steps (status, hours after T0[, reason or outcome]) into facts."""
    facts: ReferralFacts | None = None
    for step in steps:
        status, hours = step[0], step[1]
        code = step[2] if len(step) > 2 else None  # type: ignore[misc]
        change = ReferralChange(
            referral_id="r1",
            case_id="c1",
            site_id="lyon-8",
            partner_id="prefecture-69",
            status=status,
            at=T0 + timedelta(hours=hours),
            reason=None if status == "completed" else code,
            outcome=code if status == "completed" else None,
        )
        facts = apply_change(facts, change)
    assert facts is not None
    return facts


def test_times_run_from_transmission_to_the_first_report_and_to_the_final_answer() -> None:
    facts = story(
        ("requested", 0),
        ("transmitted", 1),
        ("accepted", 5),
        ("in_progress", 7),
        ("completed", 49, "resolved"),
    )
    assert facts.seconds_to_acknowledge == 4 * 3600
    assert facts.seconds_to_resolve == 48 * 3600
    assert (facts.final_status, facts.final_code) == ("completed", "resolved")


def test_a_file_held_for_documents_then_released_counts_held_released_and_complete() -> None:
    facts = story(
        ("on_hold", 0, "missing_documents"),
        ("on_hold", 24, "missing_documents"),  # documents brought, still incomplete
        ("requested", 72),
        ("transmitted", 73),
        ("received", 80),
    )
    assert facts.held_at == T0
    assert facts.released_at == T0 + timedelta(hours=72)
    assert facts.acknowledged_at == T0 + timedelta(hours=80)  # the holds were not the partner's
    assert not facts.complement_requested
    assert facts.seconds_to_acknowledge == 7 * 3600


def test_the_prefecture_asking_for_documents_after_transmission_is_not_a_complete_file() -> None:
    facts = story(
        ("requested", 0),
        ("transmitted", 1),
        ("received", 3),
        ("on_hold", 30, "missing_documents"),
        ("in_progress", 60),
    )
    assert facts.held_at is None
    assert facts.complement_requested
    assert facts.acknowledged_at == T0 + timedelta(hours=3)


def test_a_partner_answering_before_the_delivery_note_is_timed_from_the_request() -> None:
    facts = story(("requested", 0), ("accepted", 2), ("transmitted", 3))
    assert facts.seconds_to_acknowledge == 2 * 3600


def test_nothing_changes_a_final_referral() -> None:
    facts = story(("requested", 0), ("transmitted", 1), ("expired", 700), ("completed", 800, "x"))
    assert (facts.final_status, facts.final_at) == ("expired", T0 + timedelta(hours=700))
    assert facts.acknowledged_at is None
    assert facts.seconds_to_resolve is None  # an expiry is not an answer


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.9, 7.0),
        ([4.0, 1.0, 3.0, 2.0], 0.5, 2.0),
        ([*range(1, 11)], 0.9, 9),
    ],
)
def test_percentiles_are_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == expected


def facts_for_two_partners() -> Facts:
    cases, referrals, notes, assessments = [], [], [], []
    for n in range(6):
        opened = T0 + timedelta(days=n)
        case_id = f"c{n}"
        cases.append(CaseFacts(case_id, "lyon-8", "energy_bill", "phone", opened))
        partners = ["edf", "la-poste"] if n == 0 else ["edf"]
        for partner in partners:
            referral = story(("requested", 0), ("transmitted", 1), ("completed", 25, "resolved"))
            referrals.append(
                ReferralFacts(
                    **{
                        **referral.__dict__,
                        "referral_id": f"r{n}-{partner}",
                        "case_id": case_id,
                        "partner_id": partner,
                        "site_id": "lyon-8",
                    }
                )
            )
        notes.append(NotificationFact(f"n{n}", case_id, None, "visitor", "sms", True, None, opened))
    assessments.append(
        AssessmentFact("r0-edf", "c0", "lyon-8", "edf", 2, ("slow",), "Trop lent.", T0)
    )
    return Facts(tuple(cases), tuple(referrals), (), tuple(notes), tuple(assessments))


def test_a_need_counts_once_overall_and_once_for_each_partner_it_went_to() -> None:
    review = compute_review(facts_for_two_partners(), year=2026)
    total = review.row("*", "*", "year")
    assert total is not None
    assert (total.values["needs"], total.values["referrals"]) == (6, 7)
    edf, poste = review.row("lyon-8", "edf", "year"), review.row("lyon-8", "la-poste", "year")
    assert edf is not None
    assert poste is not None
    assert (edf.values["needs"], poste.values["needs"]) == (6, 1)
    assert edf.values["needs.channel.phone"] == 6
    # A notification about the case as a whole counts for the site, not for a partner.
    assert total.values["notifications.sent.sms"] == 6
    assert edf.values["notifications.sent.sms"] == 0
    assert [c.text for c in review.comments] == ["Trop lent."]
    assert review.row("lyon-8", "edf", "2027") is None


def test_a_partner_report_hides_small_counts_and_comments_and_other_partners() -> None:
    review = compute_review(facts_for_two_partners(), year=2026, partner="edf")
    assert review.audience == "partner"
    assert review.comments == ()
    assert set(review.partners) == {"edf"}
    year = review.row("lyon-8", "edf", "year")
    assert year is not None
    assert year.values["needs"] == 6
    assert year.values["outcome.not_resolved"] == "< 5"
    assert year.values["assessments.count"] == "< 5"
    assert year.values["assessments.mean_rating"] == "< 5"  # one rating would be revealed
    assert year.values["resolve.median_h"] == 24.0  # from six answers: shown
    may = review.row("lyon-8", "edf", "05")
    assert may is not None
    assert may.values["referrals"] == 6
    page = review_html(review, partner_names={"edf": "EDF", "la-poste": "La Poste"})
    assert "Trop lent" not in page
    assert "La Poste" not in page


def test_suppression_reads_the_basis_of_each_statistic() -> None:
    values = compute_review(facts_for_two_partners(), year=2026).rows[0].values
    shown = suppress_small({**values, "ack.count": 5, "ack.median_h": 1.5})
    assert shown["ack.median_h"] == 1.5


def test_csv_is_for_french_spreadsheets_and_json_for_programs() -> None:
    review = compute_review(facts_for_two_partners(), year=2026)
    raw = review_csv(review, partner_names={"edf": "EDF"})
    assert raw.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    header = table[0]
    line = next(r for r in table if r[:3] == ["lyon-8", "EDF", "Année 2026"])
    assert line[header.index("Délai de traitement, médiane (h)")] == "24,0"
    assert line[header.index("Note moyenne (sur 5)")] == "2,00"
    assert line[header.index("Naturalisation : part des dossiers complets (%)")] == ""
    assert table[-1][:3] == ["Tous les sites", "Tous les partenaires", "Année 2026"]
    comments = comments_csv(review, partner_names={"edf": "EDF"}).decode("utf-8-sig")
    assert comments.splitlines()[1] == "lyon-8;EDF;2026-05;2;lent;Trop lent."
    document = json.loads(review_json(review))
    assert document["figures"][0] == {
        "key": "needs",
        "label_fr": "Besoins",
        "label_en": "Needs",
        "kind": "count",
    }
    assert len(document["rows"]) == 13 * 6  # (lyon-8, *) x (edf, la-poste, *) x 13


def test_the_page_is_the_same_for_the_same_facts_and_loads_nothing() -> None:
    facts = facts_for_two_partners()
    first = review_html(compute_review(facts, year=2026), partner_names={})
    again = review_html(compute_review(facts, year=2026), partner_names={})
    assert first == again
    assert "<script" not in first
    assert 'src="' not in first
    assert first.count('<svg class="chart"') == 3 + 2 * 2


def test_the_report_names_partners_from_the_platform_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partner added by data alone is named in the review by its operator's name."""
    from pimms_contracts.partners.directory import DEFAULT_DIRECTORY_PATH
    from pimms_reporting.report import partner_names

    packaged = DEFAULT_DIRECTORY_PATH.read_text(encoding="utf-8")
    assert "Eau du Grand Lyon" in packaged
    changed = tmp_path / "directory.toml"
    changed.write_text(packaged.replace("Eau du Grand Lyon", "Régie des eaux"), encoding="utf-8")
    monkeypatch.setenv("PIMMS_PARTNER_DIRECTORY", str(changed))
    assert partner_names()["eau-grand-lyon"] == "Régie des eaux"
    monkeypatch.setenv("PIMMS_PARTNER_DIRECTORY", str(tmp_path / "missing.toml"))
    assert partner_names() == {}  # ids alone, the report is still written
