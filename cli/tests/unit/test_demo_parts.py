"""The demo's parts without a broker: partner formats, the observer's reactions, the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from defusedxml import ElementTree
from pimms_cli.demo.checks import problems
from pimms_cli.demo.observer import Observer
from pimms_cli.demo.partners import LA_POSTE_NS, SIMULATORS, Edf, FeedKind, LaPoste, edf, poste
from pimms_cli.demo.report import report
from pimms_cli.demo.scenario import morning
from pimms_cli.demo.story import (
    CaseOutcome,
    Closes,
    Need,
    On,
    PartnerSays,
    ReferralStatus,
    Story,
)
from pimms_cli.kafkatail import Seen
from pimms_cli.terminal import render
from pimms_contracts import topics
from pimms_contracts.envelope import Envelope
from pimms_contracts.examples import need_submitted

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def test_la_poste_answers_in_its_namespace_with_text_escaped() -> None:
    value = LaPoste().answer(
        reference="R-1", answer=poste("traitee", commentaire="Colis <AR> & retour"), at=AT
    )

    root = ElementTree.fromstring(value)
    assert root.tag == f"{{{LA_POSTE_NS}}}reponse"
    assert root.get("reference") == "R-1"
    assert root.get("etat") == "traitee"
    assert root.findtext(f"{{{LA_POSTE_NS}}}commentaire") == "Colis <AR> & retour"


def test_partners_read_referrals_reminders_and_cancellations() -> None:
    referral = json.dumps({"reference": "R-1", "dossierPimms": "LYON8-2026-000001"}).encode()
    reminder = json.dumps({"reference": "R-1", "dossierPimms": "X", "relance": 1}).encode()
    cancel = json.dumps({"reference": "R-1", "statut": "ANNULE"}).encode()
    demande = (
        f'<demande xmlns="{LA_POSTE_NS}" reference="R-2" dossier="BREST-2026-000001" '
        'horodatage="2026-11-27T09:30:00+01:00"><objet priorite="haute">x</objet></demande>'
    ).encode()
    annulation = f'<annulation xmlns="{LA_POSTE_NS}" reference="R-2" horodatage="x"/>'.encode()

    assert Edf().read(referral) is not None
    assert Edf().read(referral).case_reference == "LYON8-2026-000001"  # type: ignore[union-attr]
    assert Edf().read(reminder).kind is FeedKind.REMINDER  # type: ignore[union-attr]
    assert Edf().read(cancel).kind is FeedKind.CANCELLATION  # type: ignore[union-attr]
    assert LaPoste().read(demande).case_reference == "BREST-2026-000001"  # type: ignore[union-attr]
    assert LaPoste().read(annulation).kind is FeedKind.CANCELLATION  # type: ignore[union-attr]


def _event(topic: str, ce_type: str, body: dict[str, object], key: str | None = None) -> Seen:
    return Seen(topic, key, json.dumps(body).encode(), {"ce_type": ce_type})


def test_the_observer_plays_the_partner_and_the_case_passes_its_checks() -> None:
    need = need_submitted()
    story = Story(
        "EDF",
        Need(need),
        answers={"edf": (edf("RECU"), edf("CLOS", resultat="SOLUTION_TROUVEE"))},
        reactions=(On("closed", PartnerSays("edf", edf("RECU"))),),
        expect=Closes(
            CaseOutcome.RESOLVED,
            {"edf": ReferralStatus.COMPLETED},
            partner_dead_letters=("impossible_transition",),
        ),
    )
    observer = Observer([story], SIMULATORS, clock=lambda: AT)

    (sent,) = observer.opening()
    assert sent.topic == topics.INTAKE_NEEDS
    assert sent.key == need["submission_id"]
    assert Envelope.from_headers(sent.headers).type == "fr.pimms.need.submitted.v1"

    accepted = _event(
        topics.INTAKE_FEEDBACK,
        "fr.pimms.need.accepted.v1",
        {"submission_id": need["submission_id"], "case_id": "c1", "case_reference": "LYON8-1"},
    )
    referral = Seen(
        topics.partner_referrals("edf"),
        "R-1",
        json.dumps({"reference": "R-1", "dossierPimms": "LYON8-1"}).encode(),
        {},
    )
    answers = observer.observe([accepted, referral])
    assert [(m.topic, m.key) for m in answers] == [(topics.partner_responses("edf"), "R-1")] * 2
    assert [json.loads(m.value)["statut"] for m in answers] == ["RECU", "CLOS"]
    assert all(m.headers == [] for m in answers)  # partners send no CloudEvents headers
    assert observer.observe([referral]) == []  # the same referral again: answered once

    case = "fr.pimms.referral.completed.v1"
    late = observer.observe(
        [
            _event(topics.CASES, case, {"case_id": "c1", "status": "completed",
                                        "partner_id": "edf", "outcome": "resolved"}),
            _event(topics.CASES, "fr.pimms.case.closed.v1",
                   {"case_id": "c1", "status": "closed", "outcome": "resolved"}),
        ]
    )  # fmt: skip
    assert [json.loads(m.value)["statut"] for m in late] == ["RECU"]  # said after the close
    assert problems(0, stories=[story], followed=observer.followed) == [
        "visitor not notified",
        "mediator not notified",
        "no partner dead letter impossible_transition",
    ]

    sent_type = "fr.pimms.notification.sent.v1"
    observer.observe(
        [
            _event(topics.NOTIFICATIONS, sent_type,
                   {"case_id": "c1", "audience": "visitor", "channel": "sms"}),
            _event(topics.NOTIFICATIONS, sent_type,
                   {"case_id": "c1", "audience": "mediator", "channel": "mediator_inbox"}),
            Seen(topics.dead_letters(topics.partner_responses("edf")), "R-1", b"{}",
                 {"pimms_dlt_reason": "impossible_transition"}),
        ]
    )  # fmt: skip
    assert problems(0, stories=[story], followed=observer.followed) == []


def test_the_report_fits_100_columns_and_says_what_failed() -> None:
    stories = morning()
    observer = Observer(stories, SIMULATORS, clock=lambda: AT)
    observer.opening()

    text = render(report(stories, observer.followed), width=100)

    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Unpaid EDF bill" in text
    assert text.count("FAIL: no") == 17  # nothing happened yet: every story says so
    assert "\x1b[" not in text  # plain text when not on a terminal
