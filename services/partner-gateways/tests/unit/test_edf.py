"""EDF's JSON format, both ways (specs/partners.md, `edf`): what EDF reads, what EDF may answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pimms_partner_gateways.adapters.base import BadPartnerMessage, CannotRender
from pimms_partner_gateways.adapters.edf import ADAPTER as EDF
from pimms_partner_gateways.domain.model import Dossier, Referral

REFERENCE = "3f2b8c1e-5d4a-4e8b-9c7d-1a2b3c4d5e6f"


def answer(**fields: Any) -> bytes:
    data: dict[str, Any] = {
        "reference": REFERENCE,
        "statut": "RECU",
        "horodatage": "2026-12-01T14:00:00+01:00",
    }
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


# --- referrals to EDF ---


def test_the_referral_is_the_specification_example_byte_for_byte(
    dossier: Dossier, referral: Referral, read_golden: Callable[[str], bytes]
) -> None:
    assert EDF.to_referral(dossier, referral) == read_golden("edf_referral.json")


def test_the_referral_is_utf8_json_with_the_specification_key_order(
    dossier: Dossier, referral: Referral
) -> None:
    payload = EDF.to_referral(dossier, referral)
    data = json.loads(payload.decode("utf-8"))
    assert list(data) == [
        "reference",
        "dossierPimms",
        "dateDemande",
        "motif",
        "urgence",
        "client",
        "pointAccueil",
        "description",
    ]
    assert list(data["client"]) == ["nom", "prenom", "telephone", "email", "codePostal"]
    assert "impayée".encode() in payload  # ensure_ascii=False: no \u escapes


@pytest.mark.parametrize(
    ("consent", "expected"),
    [
        ({"sms": True, "phone": "+33612345678"}, ("+33612345678", None)),
        ({"sms": False, "phone": None}, (None, None)),
        (
            {"sms": False, "phone": None, "email_consent": True, "email": "marie@example.org"},
            (None, "marie@example.org"),
        ),
        (
            {"sms": True, "email_consent": True, "email": "marie@example.org"},
            ("+33612345678", "marie@example.org"),
        ),
    ],
)
def test_contacts_are_given_only_where_the_visitor_consented(
    make_dossier: Callable[..., Dossier],
    referral: Referral,
    consent: dict[str, Any],
    expected: tuple[str | None, str | None],
) -> None:
    client = json.loads(EDF.to_referral(make_dossier(**consent), referral))["client"]
    assert (client["telephone"], client["email"]) == expected


def test_a_contact_stored_without_consent_is_still_not_given(
    dossier: Dossier, referral: Referral
) -> None:
    from dataclasses import replace

    leaky = replace(dossier, consent_sms=False, email="marie@example.org", consent_email=False)
    client = json.loads(EDF.to_referral(leaky, referral))["client"]
    assert client["telephone"] is None
    assert client["email"] is None


@pytest.mark.parametrize(
    ("urgency", "urgence"), [("high", "HAUTE"), ("normal", "NORMALE"), ("low", "BASSE")]
)
def test_urgency(
    make_dossier: Callable[..., Dossier], referral: Referral, urgency: str, urgence: str
) -> None:
    data = json.loads(EDF.to_referral(make_dossier(urgency=urgency), referral))
    assert data["urgence"] == urgence


def test_name_is_upper_cased_and_the_request_date_keeps_its_offset(
    make_dossier: Callable[..., Dossier], referral: Referral
) -> None:
    dossier = make_dossier(
        last_name="Łukasiewicz-Ôté", first_name="Élodie", submitted_at="2026-07-01T18:05:09-05:00"
    )
    payload = EDF.to_referral(dossier, referral)
    data = json.loads(payload)
    assert data["client"]["nom"] == "ŁUKASIEWICZ-ÔTÉ"
    assert data["client"]["prenom"] == "Élodie"
    assert data["dateDemande"] == "2026-07-01T18:05:09-05:00"


def test_a_summary_with_quotes_and_newlines_stays_one_json_value(
    make_dossier: Callable[..., Dossier], referral: Referral
) -> None:
    summary = 'Facture "urgente" <à payer> & \\ relance\n\tdeuxième ligne'
    data = json.loads(EDF.to_referral(make_dossier(summary=summary), referral))
    assert data["description"] == summary


def test_a_category_edf_has_no_motif_for_cannot_be_rendered(
    make_dossier: Callable[..., Dossier], referral: Referral
) -> None:
    with pytest.raises(CannotRender) as caught:
        EDF.to_referral(make_dossier(category="postal_service"), referral)
    assert caught.value.reason == "unsupported_category"


def test_the_cancellation_is_the_golden_file(
    referral: Referral, read_golden: Callable[[str], bytes]
) -> None:
    at = datetime(2026, 11, 27, 9, 15, 0, 123456, tzinfo=UTC)
    assert EDF.to_cancellation(referral, at) == read_golden("edf_cancellation.json")


def test_the_cancellation_time_is_paris_time_in_summer_too(referral: Referral) -> None:
    at = datetime(2026, 7, 14, 21, 0, 5, tzinfo=timezone(timedelta(hours=-4)))
    data = json.loads(EDF.to_cancellation(referral, at))
    assert data == {
        "reference": REFERENCE,
        "statut": "ANNULE",
        "horodatage": "2026-07-15T03:00:05+02:00",
    }


# --- answers from EDF ---


@pytest.mark.parametrize(
    ("statut", "status"),
    [
        ("RECU", "received"),
        ("PRIS_EN_CHARGE", "accepted"),
        ("EN_COURS", "in_progress"),
        ("EN_ATTENTE_CLIENT", "on_hold"),
    ],
)
def test_statuses(statut: str, status: str) -> None:
    result = EDF.from_response(answer(statut=statut, commentaire="Dossier reçu"))
    assert result.reference == REFERENCE
    assert result.status == status
    assert result.outcome is None
    assert result.reason is None
    assert result.reported_at == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    assert result.reported_at.utcoffset() == timedelta(hours=1)  # the partner's own offset


@pytest.mark.parametrize(
    ("resultat", "outcome"),
    [
        ("SOLUTION_TROUVEE", "resolved"),
        ("SANS_SOLUTION", "not_resolved"),
        ("CLIENT_INJOIGNABLE", "visitor_unreachable"),
    ],
)
def test_closed_with_each_outcome(resultat: str, outcome: str) -> None:
    result = EDF.from_response(answer(statut="CLOS", resultat=resultat))
    assert (result.status, result.outcome, result.reason) == ("completed", outcome, None)


@pytest.mark.parametrize(
    ("motif", "reason"),
    [
        ("HORS_PERIMETRE", "out_of_scope"),
        ("DOUBLON", "duplicate"),
        ("DOSSIER_INCOMPLET", "other"),
        (..., "other"),
    ],
)
def test_refused_with_each_reason(motif: Any, reason: str) -> None:
    result = EDF.from_response(answer(statut="REFUSE", motif=motif))
    assert (result.status, result.outcome, result.reason) == ("rejected", None, reason)


def test_a_utc_time_is_accepted() -> None:
    result = EDF.from_response(answer(horodatage="2026-12-01T13:00:00.250Z"))
    assert result.reported_at == datetime(2026, 12, 1, 13, 0, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "reason", "says"),
    [
        (b"{not json", "not_json", "not JSON"),
        (b'{"statut": "re\xe7u"}', "not_json", "not UTF-8"),  # ISO-8859-1
        (None, "not_json", "no value"),
        (b"[1, 2]", "schema_invalid", "JSON object"),
        (answer(reference=...), "schema_invalid", "reference"),
        (answer(reference=""), "schema_invalid", "reference"),
        (answer(reference=42), "schema_invalid", "reference"),
        (answer(statut=...), "schema_invalid", "statut is missing"),
        (answer(statut=3), "schema_invalid", "statut must be"),
        (answer(horodatage=...), "schema_invalid", "horodatage"),
        (answer(horodatage="01/12/2026 14:00"), "schema_invalid", "horodatage"),
        (answer(horodatage="2026-12-01T14:00:00"), "schema_invalid", "offset"),
        (answer(horodatage="2026-02-30T14:00:00+01:00"), "schema_invalid", "horodatage"),
        (answer(statut="CLOS"), "schema_invalid", "statut CLOS requires resultat"),
        (answer(commentaire=["x"]), "schema_invalid", "commentaire"),
        (answer(statut="ANNULE"), "unknown_status", "'ANNULE'"),
        (answer(statut="recu"), "unknown_status", "'recu'"),
        (answer(statut="CLOS", resultat="PEUT_ETRE"), "unknown_outcome", "'PEUT_ETRE'"),
    ],
)
def test_bad_answers_are_refused_with_a_precise_reason(
    value: bytes | None, reason: str, says: str
) -> None:
    with pytest.raises(BadPartnerMessage) as caught:
        EDF.from_response(value)
    assert caught.value.reason == reason
    assert says in caught.value.error


def test_errors_never_echo_what_the_partner_wrote_about_the_visitor() -> None:
    personal = "Marie Dupont +33612345678 marie.dupont@example.org"
    for value in (
        answer(statut=personal, commentaire=personal),
        answer(statut="CLOS", resultat=personal),
        answer(horodatage=personal),
    ):
        with pytest.raises(BadPartnerMessage) as caught:
            EDF.from_response(value)
        for fragment in ("Marie", "Dupont", "+3361", "example.org"):
            assert fragment not in caught.value.error


def test_fields_edf_added_without_telling_us_are_ignored_and_named() -> None:
    personal = "Marie Dupont +33612345678"
    read = EDF.read_response(
        answer(
            statut="CLOS",
            resultat="SOLUTION_TROUVEE",
            resultats="x",
            agence={"code": 3},
            **{personal: 1},
        )
    )
    assert (read.answer.status, read.answer.outcome) == ("completed", "resolved")
    assert read.unknown_fields == {"resultats", "agence", "(not a code word)"}
    assert EDF.read_response(answer()).unknown_fields == frozenset()
