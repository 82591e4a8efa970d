"""The demo's parts without a broker: partner formats, the observer's reactions, the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from defusedxml import ElementTree
from pimms_cli.demo.checks import problems
from pimms_cli.demo.observer import Observer
from pimms_cli.demo.partners import (
    LA_POSTE_NS,
    SIMULATORS,
    BanquePostale,
    EauGrandLyon,
    Edf,
    FeedKind,
    FeedMessage,
    LaPoste,
    Orange,
    Prefecture,
    Sncf,
    edf,
    egl,
    orange,
    poste,
    sncf,
)
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
from pimms_cli.demo.transports import FileDropPartner, demo_directory
from pimms_cli.kafkatail import Seen
from pimms_cli.terminal import render
from pimms_contracts import topics
from pimms_contracts.envelope import Envelope
from pimms_contracts.examples import need_submitted
from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH, parse_directory

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


# --- partners outside Kafka, and partners declared by data ---


def test_eau_grand_lyon_reads_export_lines_and_answers_in_csv() -> None:
    simulator = EauGrandLyon()
    referral = (
        b'R-9;LYON7-2026-000004;27/11/2026 09:30;"N\'Diaye; ""Ren\xe9e""";Zo\xeb;;69007;2;x\r\n'
    )
    reminder = b"R-9;LYON7-2026-000004;27/11/2026 09:30;N;Z;;69007;2;RELANCE 1 - x\r\n"
    cancel = b"R-9;;27/11/2026 10:00;;;;;0;ANNULATION\r\n"

    assert simulator.read(referral) == FeedMessage(FeedKind.REFERRAL, "R-9", "LYON7-2026-000004")
    assert simulator.read(reminder).kind is FeedKind.REMINDER  # type: ignore[union-attr]
    assert simulator.read(cancel) == FeedMessage(FeedKind.CANCELLATION, "R-9", None)
    answer = simulator.answer(reference="R-9", answer=egl("TRAITE", motif="RESOLU"), at=AT)
    assert answer == b"R-9;TRAITE;27/11/2026 10:30;RESOLU;\r\n"  # Paris time, CRLF


def test_webhook_and_mapped_partners_read_their_messages_and_answer_in_their_words() -> None:
    body = json.dumps({"referral_id": "R-3", "case_reference": "LYON8-2026-000002"}).encode()
    cancelled = json.dumps({"referral_id": "R-3", "status": "cancelled", "at": "x"}).encode()
    assert Sncf().read(body) == FeedMessage(FeedKind.REFERRAL, "R-3", "LYON8-2026-000002")
    assert BanquePostale().read(cancelled).kind is FeedKind.CANCELLATION  # type: ignore[union-attr]
    answer = json.loads(
        Sncf().answer(reference="R-3", answer=sncf("done", outcome="resolved"), at=AT)
    )
    assert answer == {
        "referral_id": "R-3",
        "status": "done",
        "outcome": "resolved",
        "at": "2026-11-27T09:30:00+00:00",
    }
    feed = json.dumps({"reference": "R-4", "dossier": "NANTESN-2026-000001", "relance": 1}).encode()
    assert Orange().read(feed) == FeedMessage(FeedKind.REMINDER, "R-4", "NANTESN-2026-000001")
    assert json.loads(Orange().answer(reference="R-4", answer=orange("RESOLUE"), at=AT))[
        "statut"
    ] == ("RESOLUE")
    withdrawn = json.dumps({"numeroDemande": "R-5", "etat": "RETIRE"}).encode()
    assert Prefecture().read(withdrawn).kind is FeedKind.CANCELLATION  # type: ignore[union-attr]


def test_the_observer_answers_a_partner_outside_kafka_and_ignores_what_is_not_its_format() -> None:
    need = need_submitted(need__category="rail_travel")
    story = Story(
        "SNCF",
        Need(need),
        answers={"sncf": (sncf("received"), sncf("done", outcome="resolved"))},
        expect=Closes(CaseOutcome.RESOLVED, {"sncf": ReferralStatus.COMPLETED}),
    )
    observer = Observer([story], SIMULATORS, clock=lambda: AT)
    observer.opening()
    accepted = _event(
        topics.INTAKE_FEEDBACK,
        "fr.pimms.need.accepted.v1",
        {"submission_id": need["submission_id"], "case_id": "c1", "case_reference": "LYON8-1"},
    )
    observer.observe([accepted])
    body = json.dumps({"referral_id": "R-1", "case_reference": "LYON8-1"}).encode()

    answers = observer.received("sncf", body)
    assert [(m.topic, m.key) for m in answers] == [(topics.partner_responses("sncf"), "R-1")] * 2
    assert [json.loads(m.value)["status"] for m in answers] == ["received", "done"]
    assert observer.received("sncf", body) == []  # the same referral again: answered once
    assert observer.received("sncf", b"<not json>") == []
    assert topics.partner_referrals("sncf") not in observer.topics()  # no feed: a webhook
    assert topics.dead_letters(topics.partner_responses("sncf")) in observer.topics()


def test_the_demo_directory_points_webhooks_at_the_simulators_and_exports_every_2s() -> None:
    text = DEFAULT_DIRECTORY_PATH.read_text(encoding="utf-8")
    urls = {"sncf": "http://127.0.0.1:4001/sncf/referrals", "banque-postale": "http://h:2/b"}

    directory = parse_directory(demo_directory(text, urls=urls))

    for partner_id, url in urls.items():
        assert directory.get(partner_id).transport.url == url  # type: ignore[union-attr]
    egl_transport = directory.get("eau-grand-lyon").transport  # type: ignore[union-attr]
    assert egl_transport.export_every.total_seconds() == 2  # type: ignore[union-attr]
    assert [p.id for p in directory.partners] == [p.id for p in parse_directory(text).partners]


def test_the_file_drop_partner_reads_whole_exports_once_and_drops_renamed_files(
    tmp_path: Path,
) -> None:
    outbound, inbound = tmp_path / "out", tmp_path / "in"
    outbound.mkdir()
    partner = FileDropPartner(outbound=outbound, inbound=inbound)
    header = (
        b"REFERENCE;DOSSIER;DATE_DEMANDE;NOM;PRENOM;TELEPHONE;CODE_POSTAL;URGENCE;DESCRIPTION\r\n"
    )
    line = b'R-1;D-1;27/11/2026 09:30;N;P;;69007;2;"deux\r\nlignes; et ""guillemets"""\r\n'
    (outbound / ".PIMMS_EGL_20261127093000_1.csv.part").write_bytes(header + line)
    assert partner.take() == []  # never half a file
    (outbound / ".PIMMS_EGL_20261127093000_1.csv.part").rename(
        outbound / "PIMMS_EGL_20261127093000_1.csv"
    )
    [record] = partner.take()
    assert EauGrandLyon().read(record) == FeedMessage(FeedKind.REFERRAL, "R-1", "D-1")
    assert partner.take() == []

    dropped = partner.drop(EauGrandLyon.header, [b"R-1;RECU;27/11/2026 10:30;;\r\n"])
    assert dropped.parent == inbound
    assert (
        dropped.read_bytes()
        == b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nR-1;RECU;27/11/2026 10:30;;\r\n"
    )
    assert [p.name for p in inbound.iterdir()] == [dropped.name]
