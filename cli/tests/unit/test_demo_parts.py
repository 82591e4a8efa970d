"""The demo's parts without a broker: partner formats, the observer's reactions, the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from defusedxml import ElementTree
from pimms_cli.demo.checks import problems
from pimms_cli.demo.clock import (
    PlatformTime,
    own_platform_time,
    platform_time_of,
    running_platform_time,
)
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
    prefecture,
    sncf,
)
from pimms_cli.demo.report import report
from pimms_cli.demo.run import stories_for
from pimms_cli.demo.scenario import morning
from pimms_cli.demo.story import (
    AddDocuments,
    CaseOutcome,
    Closes,
    Need,
    On,
    PartnerSays,
    ReferralStatus,
    Story,
)
from pimms_cli.demo.transports import FileDropPartner, demo_directory
from pimms_cli.demo.yearly import demo_year
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
    assert text.count("FAIL: no") == 19  # nothing happened yet: every story says so
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


# --- the closed loop: a partner chased to expiry, a file held for its documents ---


def _accepted(need: dict[str, object], case_id: str, reference: str) -> Seen:
    return _event(
        topics.INTAKE_FEEDBACK,
        "fr.pimms.need.accepted.v1",
        {"submission_id": need["submission_id"], "case_id": case_id, "case_reference": reference},
    )


def _told(case_id: str, audience: str, template: str) -> Seen:
    channel = "mediator_inbox" if audience == "mediator" else "sms"
    body = {"case_id": case_id, "audience": audience, "channel": channel, "template": template}
    return _event(topics.NOTIFICATIONS, "fr.pimms.notification.sent.v1", body)


def test_a_silent_partner_passes_only_once_reminded_escalated_and_expired() -> None:
    need = need_submitted()
    story = Story(
        "silent EDF",
        Need(need),
        expect=Closes(CaseOutcome.NOT_RESOLVED, {"edf": ReferralStatus.EXPIRED}),
    )
    assert story.runs_the_ladder
    observer = Observer([story], SIMULATORS, clock=lambda: AT)
    observer.opening()
    referral = {"reference": "R-1", "dossierPimms": "LYON8-1"}
    feed = topics.partner_referrals("edf")
    about = {"case_id": "c1", "partner_id": "edf", "referral_id": "R-1"}

    silent = observer.observe(
        [_accepted(need, "c1", "LYON8-1"), Seen(feed, "R-1", json.dumps(referral).encode(), {})]
    )
    assert silent == []  # the partner never answers
    assert "no reminder on edf's feed" in problems(0, stories=[story], followed=observer.followed)

    relance = Seen(feed, "R-1", json.dumps({**referral, "relance": 1}).encode(), {})
    reminded = _event(
        topics.CASES,
        "fr.pimms.referral.reminded.v1",
        {**about, "status": "transmitted", "reason": "no_acknowledgement", "reminder": 1},
    )
    escalated = _event(
        topics.CASES,
        "fr.pimms.referral.escalated.v1",
        {**about, "status": "transmitted", "reason": "no_acknowledgement"},
    )
    assert observer.observe([relance, reminded, escalated]) == []
    seen = observer.followed[0]
    assert seen.reminders_received == {"edf": 1}
    assert seen.chased == ["edf reminded 1", "edf escalated"]
    assert seen.partners == {}  # a reminder leaves the referral's status as it is
    observer.observe(
        [
            _event(topics.CASES, "fr.pimms.referral.expired.v1",
                   {**about, "status": "expired", "reason": "no_final_answer"}),
            _event(topics.CASES, "fr.pimms.case.closed.v1",
                   {"case_id": "c1", "status": "closed", "outcome": "not_resolved"}),
            _told("c1", "mediator", "partner_reminded"),
            _told("c1", "mediator", "referral_escalated"),
        ]
    )  # fmt: skip
    assert problems(0, stories=[story], followed=observer.followed) == [
        "visitor not notified",
        "mediator not told referral_expired",
        "visitor not told of the expiry",
    ]
    observer.observe([_told("c1", "mediator", "combined"), _told("c1", "visitor", "combined")])
    assert problems(0, stories=[story], followed=observer.followed) == []
    text = render(report([story], observer.followed), width=100)
    assert "got relance" in text
    assert "escalated" in text


def test_a_held_file_passes_once_told_released_and_answered() -> None:
    need = need_submitted(need__category="naturalisation", need__documents=["id_card"])
    missing = ("birth_certificate", "proof_of_address", "tax_notices", "language_diploma")
    story = Story(
        "naturalisation",
        Need(need),
        reactions=(On("on_hold", AddDocuments(missing)),),
        answers={"prefecture-69": (prefecture("RECEPTIONNE"), prefecture("DECISION_RENDUE"))},
        expect=Closes(
            CaseOutcome.RESOLVED, {"prefecture-69": ReferralStatus.COMPLETED}, held_for=missing
        ),
    )
    assert not story.runs_the_ladder
    assert story.desk_answers == 2  # accepted, then acknowledged (documents_added)
    observer = Observer([story], SIMULATORS, clock=lambda: AT)
    observer.opening()
    about = {"case_id": "c1", "partner_id": "prefecture-69", "referral_id": "R-1"}
    held = _event(
        topics.CASES,
        "fr.pimms.referral.on_hold.v1",
        {**about, "status": "on_hold", "reason": "missing_documents",
         "missing_documents": list(missing)},
    )  # fmt: skip
    [added] = observer.observe([_accepted(need, "c1", "VAULX-1"), held])
    assert added.topic == topics.INTAKE_NEEDS
    assert Envelope.from_headers(added.headers).type == "fr.pimms.need.documents_added.v1"
    assert json.loads(added.value)["documents"] == list(missing)
    assert "not released" in problems(0, stories=[story], followed=observer.followed)

    requested = _event(
        topics.CASES, "fr.pimms.referral.requested.v1", {**about, "status": "requested"}
    )
    file = {"numeroDemande": "R-1", "dossierPimms": "VAULX-1", "complet": True}
    answers = observer.observe(
        [
            requested,
            Seen(topics.partner_referrals("prefecture-69"), "R-1", json.dumps(file).encode(), {}),
        ]
    )
    assert [json.loads(m.value)["etat"] for m in answers] == ["RECEPTIONNE", "DECISION_RENDUE"]
    observer.observe(
        [
            _event(topics.CASES, "fr.pimms.referral.completed.v1",
                   {**about, "status": "completed", "outcome": "resolved"}),
            _event(topics.CASES, "fr.pimms.case.closed.v1",
                   {"case_id": "c1", "status": "closed", "outcome": "resolved"}),
            _told("c1", "visitor", "combined"),
            _told("c1", "mediator", "case_closed"),
        ]
    )  # fmt: skip
    assert problems(0, stories=[story], followed=observer.followed) == [
        "mediator not told the missing documents"
    ]
    observer.observe([_told("c1", "mediator", "referral_on_hold_documents")])
    assert problems(0, stories=[story], followed=observer.followed) == []
    text = render(report([story], observer.followed), width=100)
    assert "held, missing" in text
    assert "released" in text


def test_the_demos_own_platform_runs_fast_and_a_real_time_one_leaves_the_ladder_out(
    tmp_path: Path,
) -> None:
    variables = own_platform_time({}, now=1_800_000_000.0)
    assert variables["PIMMS_TIME_SCALE"] == "43200"
    assert variables["PIMMS_TIME_ANCHOR"] == "1800000000.0"
    assert "PIMMS_NOTIFICATIONS_MOMENT_WINDOW" not in variables  # notifications scales it itself
    assert own_platform_time({"PIMMS_TIME_SCALE": "10"}, now=0.0)["PIMMS_TIME_SCALE"] == "10"
    fast = platform_time_of({k: v for k, v in variables.items() if k.startswith("PIMMS_TIME")})
    assert fast.real_seconds(timedelta(days=15)) == 30
    directory = parse_directory(DEFAULT_DIRECTORY_PATH.read_text(encoding="utf-8"))

    kept, left_out = stories_for(morning(), clock=fast, partners=directory, timeout=90)
    assert (len(kept), left_out) == (19, [])
    kept, left_out = stories_for(morning(), clock=PlatformTime(), partners=directory, timeout=90)
    assert [s.label for s in left_out] == [s.label for s in morning() if s.runs_the_ladder]
    assert len(kept) == 18

    logs = tmp_path / "logs"
    assert running_platform_time(tmp_path) is None  # no `pimms dev` log: unknown
    logs.mkdir()
    steered = {
        "event": "clock.steered",
        "time_scale": 43200.0,
        "time_start": "2026-11-27T08:30:00+00:00",
        "time_anchor": datetime.fromtimestamp(1_800_000_000, UTC).isoformat(),
    }
    lines = [
        {"event": "service.starting"},  # a first run on real time
        steered,
        {"event": "service.starting"},  # then one on a steered clock
        {"event": "referral.transmitted"},
    ]
    (logs / "referrals.log").write_text("".join(json.dumps(x) + "\n" for x in lines))
    clock = running_platform_time(tmp_path)
    assert clock is not None
    assert clock.scale == 43200
    assert clock.now(real=1_800_000_001.0) == datetime(2026, 11, 27, 20, 30, tzinfo=UTC)
    redacted = {**steered, "time_start": "2026-11-27T23:18:[redacted]+00:00"}
    with (logs / "referrals.log").open("a") as log:  # the log's redaction masked digits
        log.write(json.dumps(redacted) + "\n" + json.dumps({"event": "service.starting"}) + "\n")
    assert running_platform_time(tmp_path) == PlatformTime(scale=43200)
    with (logs / "referrals.log").open("a") as log:
        log.write(json.dumps({"event": "service.starting"}) + "\n")  # restarted on real time
    assert running_platform_time(tmp_path) == PlatformTime()


def test_the_review_is_of_the_year_the_demos_events_happened_in_on_platform_time() -> None:
    occurred = ["2026-12-30T10:00:00+00:00", "2027-01-02T10:00:00+00:00", "2027-01-09T00:00:00Z"]
    assert demo_year(occurred, default=2026) == 2027
    assert demo_year(["not a time"], default=2026) == 2026
    assert demo_year([], default=2031) == 2031
