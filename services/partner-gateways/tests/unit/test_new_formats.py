"""Formats added with the file drop and the webhook: CSV, SNCF, prefecture, mapped JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pimms_contracts.partners import load_directory, parse_directory
from pimms_partner_gateways.adapters import eau_grand_lyon as egl
from pimms_partner_gateways.adapters.base import BadPartnerMessage, PartnerAdapter
from pimms_partner_gateways.adapters.mapped_json import MappedJsonAdapter
from pimms_partner_gateways.adapters.prefecture import PrefectureAdapter, missing_documents
from pimms_partner_gateways.adapters.registry import PartnerNetwork, build_adapter
from pimms_partner_gateways.adapters.sncf import ADAPTER as SNCF
from pimms_partner_gateways.domain.model import Dossier, Referral, UnknownFieldNames

REF = "3f2b8c1e-5d4a-4e8b-9c7d-1a2b3c4d5e6f"
DIRECTORY = load_directory()


def mapped(partner_id: str) -> PartnerAdapter:
    partner = DIRECTORY.get(partner_id)
    assert partner is not None
    found = build_adapter(partner)
    assert isinstance(found, MappedJsonAdapter)
    return found


def body(**fields: Any) -> bytes:
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


# --- eau-grand-lyon ---


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+33 6", "'+33 6"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("Marie", "Marie"),
        ("a=b", "a=b"),
    ],
)
def test_cells_a_spreadsheet_would_run_are_neutralised(text: str, cell: str) -> None:
    assert egl.neutralise(text) == cell


def test_names_in_any_script_are_transliterated_never_dropped() -> None:
    assert egl.latin1_text("Łukasz") == "Lukasz"
    assert egl.latin1_text("François Müller") == "François Müller"
    assert egl.latin1_text("李明") == "LiMing"
    assert egl.latin1_text("Ольга") == "Ol'ga"
    assert egl.latin1_text("\u0301") == "?"  # nothing to transliterate: still not empty
    assert egl.latin1_text("") == ""


def test_a_hostile_name_is_neutralised_and_the_phone_kept(
    make_dossier: Callable[..., Dossier],
) -> None:
    dossier = make_dossier(category="water_bill", last_name='=HYPERLINK("x")', first_name="-Jo")
    line = egl.ADAPTER.to_referral(dossier, Referral(REF, dossier.case_id, "eau-grand-lyon"))
    text = line.decode("iso-8859-1")
    assert ';"\'=HYPERLINK(""x"")";\'-Jo;+33612345678;' in text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b"\xef\xbb\xbfREFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;RECU;01/12/2026 09:00;;\r\n",
            "bad_encoding",
        ),
        (b"REF;STATUT\r\nr;RECU\r\n", "bad_header"),
        (
            b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;RECU;01/12/2026 09:00;;\x00\r\n",
            "bad_encoding",
        ),
        (
            b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;RECU;01/12/2026 09:00;;\xe2\x82\xac\r\n",
            "bad_encoding",
        ),
        (
            b'REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;"RE"CU;01/12/2026 09:00;;\r\n',
            "malformed_line",
        ),
        (
            b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\n;RECU;01/12/2026 09:00;;\r\n",
            "schema_invalid",
        ),
        (
            b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;TRAITE;01/12/2026 09:00;;\r\n",
            "schema_invalid",
        ),
        (b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;RECU;31/11/2026 09:00;;\r\n", "bad_date"),
        (b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;RECU;01/12/2026 24:00;;\r\n", "bad_date"),
        (
            b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;recu;01/12/2026 09:00;;\r\n",
            "unknown_status",
        ),
        (
            b'REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\nr;RECU;01/12/2026 09:00;;"open\r\n',
            "malformed_line",
        ),
    ],
)
def test_a_bad_line_gets_its_reason_and_nothing_is_applied(data: bytes, reason: str) -> None:
    result = egl.read_response_file(data)
    assert result.answers == ()
    [bad] = result.bad_lines
    assert (bad.line, bad.reason) == (2, reason)


def test_a_response_file_tolerates_lf_lines_blank_lines_and_new_columns() -> None:
    data = (
        b"STATUT;REFERENCE;CANAL;DATE;MOTIF;COMMENTAIRE\n\n"
        b"REFUSE;r1;web;28/03/2027 02:30;DOUBLON;d\xe9j\xe0 trait\xe9\n"
    )
    result = egl.read_response_file(data)
    [line] = result.answers
    assert line.line == 3
    assert (line.answer.reference, line.answer.reason) == ("r1", "duplicate")
    assert result.unknown_fields == {"CANAL"}
    assert result.bad_lines == ()
    assert egl.read_response_file(b"") == egl.ResponseFile(header=(), answers=(), bad_lines=())


def test_dates_are_paris_time_winter_and_summer() -> None:
    data = (
        b"REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE\r\n"
        b"a;RECU;15/01/2027 10:00;;\r\nb;RECU;15/07/2027 10:00;;\r\n"
    )
    winter, summer = (a.answer.reported_at for a in egl.read_response_file(data).answers)
    assert winter == datetime(2027, 1, 15, 9, tzinfo=UTC)
    assert summer == datetime(2027, 7, 15, 8, tzinfo=UTC)


def test_one_line_can_be_read_as_a_message() -> None:
    answer = egl.ADAPTER.from_response(b"r1;ATTENTE;01/12/2026 09:00;;\r\n")
    assert answer.status == "on_hold"
    with pytest.raises(BadPartnerMessage) as caught:
        egl.ADAPTER.from_response(b"r1;FINI;01/12/2026 09:00;;\r\n")
    assert caught.value.reason == "unknown_status"
    with pytest.raises(BadPartnerMessage, match="exactly one"):
        egl.ADAPTER.from_response(None)


# --- sncf ---


def sncf(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "referral_id": REF,
        "status": "received",
        "at": "2026-11-28T09:00:00+01:00",
    }
    return body(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "status", "outcome", "reason"),
    [
        ({}, "received", None, None),
        ({"status": "accepted"}, "accepted", None, None),
        ({"status": "in_progress"}, "in_progress", None, None),
        ({"status": "waiting_customer"}, "on_hold", None, None),
        ({"status": "done", "outcome": "resolved"}, "completed", "resolved", None),
        ({"status": "done", "outcome": "not_resolved"}, "completed", "not_resolved", None),
        ({"status": "done", "outcome": "unreachable"}, "completed", "visitor_unreachable", None),
        ({"status": "declined", "reason": "duplicate"}, "rejected", None, "duplicate"),
        ({"status": "declined", "reason": "too late"}, "rejected", None, "other"),
        ({"status": "declined"}, "rejected", None, "other"),
    ],
)
def test_sncf_words_map_to_the_platform_status(
    fields: dict[str, Any], status: str, outcome: str | None, reason: str | None
) -> None:
    answer = SNCF.from_response(sncf(**fields))
    assert (answer.reference, answer.status, answer.outcome, answer.reason) == (
        REF,
        status,
        outcome,
        reason,
    )


def test_a_malformed_sncf_body_lists_every_error_for_the_400() -> None:
    with pytest.raises(BadPartnerMessage) as caught:
        SNCF.from_response(body(referral_id=3, status=None, comment=["x"]))
    assert caught.value.reason == "schema_invalid"
    for says in (
        "referral_id must be a string",
        "status must be a string",
        "at is missing",
        "comment",
    ):
        assert says in caught.value.error
    with pytest.raises(BadPartnerMessage, match="done requires outcome"):
        SNCF.from_response(sncf(status="done"))
    with pytest.raises(BadPartnerMessage, match="'cancelled'"):
        SNCF.from_response(sncf(status="cancelled"))


# --- prefecture-69 ---


def prefecture(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "numeroDemande": REF,
        "etat": "RECEPTIONNE",
        "horodatage": "2026-12-10T10:00:00+01:00",
    }
    return body(**{**base, **fields})


@pytest.mark.parametrize(
    ("etat", "status", "outcome", "reason"),
    [
        ("RECEPTIONNE", "received", None, None),
        ("INSTRUCTION", "in_progress", None, None),
        ("DECISION_RENDUE", "completed", "resolved", None),
        ("IRRECEVABLE", "rejected", None, "incomplete"),
    ],
)
def test_prefecture_words_map_to_the_platform_status(
    etat: str, status: str, outcome: str | None, reason: str | None
) -> None:
    answer = PrefectureAdapter().from_response(prefecture(etat=etat))
    assert (answer.status, answer.outcome, answer.reason, answer.missing_documents) == (
        status,
        outcome,
        reason,
        (),
    )


def test_a_request_for_more_documents_carries_their_codes() -> None:
    answer = PrefectureAdapter().from_response(
        prefecture(
            etat="COMPLEMENT_DEMANDE", piecesDemandees=["tax_notices", "id_card", "tax_notices"]
        )
    )
    assert (answer.status, answer.missing_documents) == ("on_hold", ("tax_notices", "id_card"))
    for pieces, reason in (
        (..., "schema_invalid"),
        ([], "schema_invalid"),
        ("tax_notices", "schema_invalid"),
        (["passport"], "unknown_document"),
    ):
        with pytest.raises(BadPartnerMessage) as caught:
            PrefectureAdapter().from_response(
                prefecture(etat="COMPLEMENT_DEMANDE", piecesDemandees=pieces)
            )
        assert caught.value.reason == reason


def test_an_incomplete_file_says_so(make_dossier: Callable[..., Dossier]) -> None:
    dossier = replace(
        make_dossier(category="naturalisation"), documents=("id_card", "birth_certificate")
    )
    payload = json.loads(PrefectureAdapter().to_referral(dossier, Referral(REF, "c", "p")))
    assert payload["piecesFournies"] == ["id_card", "birth_certificate"]
    assert payload["complet"] is False
    assert missing_documents(dossier.documents) == (
        "proof_of_address",
        "tax_notices",
        "language_diploma",
    )


# --- mapped JSON (orange, banque-postale) ---


def orange(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "reference": REF,
        "statut": "RECUE",
        "horodatage": "2026-11-30T16:30:00+01:00",
    }
    return body(**{**base, **fields})


@pytest.mark.parametrize(
    ("statut", "motif", "expected"),
    [
        ("RECUE", ..., ("received", None, None)),
        ("PRISE_EN_CHARGE", ..., ("accepted", None, None)),
        ("ATTENTE_CLIENT", ..., ("on_hold", None, None)),
        ("RESOLUE", ..., ("completed", "resolved", None)),
        ("NON_RESOLUE", ..., ("completed", "not_resolved", None)),
        ("REFUSEE", "DOUBLON", ("rejected", None, "duplicate")),
        ("REFUSEE", "AUTRE", ("rejected", None, "other")),
        ("REFUSEE", ..., ("rejected", None, "other")),
    ],
)
def test_orange_words_come_from_the_directory(
    statut: str, motif: Any, expected: tuple[Any, ...]
) -> None:
    answer = mapped("orange").from_response(orange(statut=statut, motif=motif))
    assert (answer.status, answer.outcome, answer.reason) == expected


@pytest.mark.parametrize(
    ("value", "reason", "says"),
    [
        (b"[]", "schema_invalid", "JSON object"),
        (b"\xff", "not_json", "UTF-8"),
        (orange(reference=...), "schema_invalid", "reference is missing"),
        (orange(reference="  "), "schema_invalid", "reference must be"),
        (orange(reference="x" * 201), "schema_invalid", "longer than"),
        (orange(statut=7), "schema_invalid", "statut must be"),
        (orange(statut="FINIE"), "unknown_status", "'FINIE'"),
        (orange(horodatage="hier"), "schema_invalid", "horodatage"),
        (orange(commentaire=3), "schema_invalid", "commentaire"),
    ],
)
def test_bad_mapped_answers_are_refused_with_a_reason(value: bytes, reason: str, says: str) -> None:
    with pytest.raises(BadPartnerMessage) as caught:
        mapped("orange").from_response(value)
    assert caught.value.reason == reason
    assert says in caught.value.error


def test_banque_postale_needs_an_outcome_when_done() -> None:
    bank = mapped("banque-postale")
    base = {"referral_id": REF, "at": "2026-12-02T11:00:00+01:00"}
    answer = bank.from_response(body(**base, status="done", outcome="unreachable"))
    assert (answer.status, answer.outcome) == ("completed", "visitor_unreachable")
    with pytest.raises(BadPartnerMessage, match="outcome is missing"):
        bank.from_response(body(**base, status="done"))
    with pytest.raises(BadPartnerMessage) as caught:
        bank.from_response(body(**base, status="done", outcome="maybe"))
    assert caught.value.reason == "unknown_outcome"
    declined = bank.from_response(body(**base, status="declined", reason="incomplete", note="x"))
    assert (declined.status, declined.reason) == ("rejected", "incomplete")


def test_a_mapped_partner_may_ask_for_documents() -> None:
    [partner] = parse_directory(
        """
[[partner]]
id = "caf"
operator = "CAF"
categories = ["family_benefits"]
territory = ["69"]
format = "mapped-json"
ack_within = "5d"
resolve_within = "30d"
transport = { kind = "kafka" }
[partner.mapping.referral]
id = "referral_id"
docs = "documents"
[partner.mapping.cancellation]
id = "referral_id"
[partner.mapping.response]
reference = "id"
status = "etat"
at = "le"
missing_documents = "pieces"
statuses = { ATTENTE = "on_hold", FINI = "completed/resolved" }
"""
    ).partners
    adapter = build_adapter(partner)
    assert adapter is not None
    answer = adapter.from_response(
        body(id=REF, etat="ATTENTE", le="2026-12-02T11:00:00+01:00", pieces=["tax_notices"])
    )
    assert answer.missing_documents == ("tax_notices",)
    with pytest.raises(BadPartnerMessage, match="document codes"):
        adapter.from_response(
            body(id=REF, etat="ATTENTE", le="2026-12-02T11:00:00+01:00", pieces=[1])
        )


def test_reminders_are_counted_from_one(make_dossier: Callable[..., Dossier]) -> None:
    dossier = make_dossier(category="telecom")
    for number in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            mapped("orange").to_reminder(dossier, Referral(REF, "c", "orange"), number=number)


# --- tolerant reader, once per partner ---


def test_unknown_field_names_are_reported_once_per_partner() -> None:
    seen = UnknownFieldNames()
    assert seen.first_seen(partner_id="edf", names=frozenset({"agence", "canal"})) == {
        "agence",
        "canal",
    }
    assert seen.first_seen(partner_id="edf", names=frozenset({"agence", "note"})) == {"note"}
    assert seen.first_seen(partner_id="sncf", names=frozenset({"agence"})) == {"agence"}
    assert seen.first_seen(partner_id="edf", names=frozenset()) == frozenset()


@pytest.mark.parametrize(
    ("partner_id", "value"),
    [
        ("sncf", sncf(channel="app", **{"Marie Dupont": 1})),
        ("prefecture-69", prefecture(service="naturalisation", **{"Marie Dupont": 1})),
        ("orange", orange(channel="app", **{"Marie Dupont": 1})),
    ],
)
def test_every_json_partner_tolerates_and_names_new_fields(partner_id: str, value: bytes) -> None:
    partner = DIRECTORY.get(partner_id)
    assert partner is not None
    adapter = build_adapter(partner)
    assert adapter is not None
    read = adapter.read_response(value)
    assert read.unknown_fields == {
        "channel" if partner_id != "prefecture-69" else "service",
        "(not a code word)",
    }


# --- registry ---


def test_every_partner_of_the_default_directory_has_a_format() -> None:
    formats = {p.id: build_adapter(p) for p in DIRECTORY.partners}
    assert all(formats.values())
    assert {
        p.id: a.format for p, a in zip(DIRECTORY.partners, formats.values(), strict=True) if a
    } == {
        "edf": "edf",
        "la-poste": "la-poste",
        "eau-grand-lyon": "eau-grand-lyon",
        "sncf": "sncf",
        "prefecture-69": "prefecture-69",
        "orange": "mapped-json",
        "banque-postale": "mapped-json",
    }


def test_with_every_format_orange_and_the_prefecture_are_kafka_partners() -> None:
    network = PartnerNetwork(DIRECTORY, adapter_for=build_adapter)
    assert [p.partner_id for p in network.kafka_partners()] == [
        "edf",
        "la-poste",
        "prefecture-69",
        "orange",
    ]
    assert network.reach("sncf") == "no_adapter"  # until the webhook transport is wired
