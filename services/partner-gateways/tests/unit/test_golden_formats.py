"""Golden files: every partner, both directions, referrals, reminders and cancellations.

The files under tests/golden/ are what each partner receives, byte for byte, and samples of what
each partner sends with the answer the gateway reads from them. `PIMMS_WRITE_GOLDEN=1` rewrites
the outbound files after a deliberate format change (review the diff before committing).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from defusedxml import ElementTree
from pimms_contracts.partners import load_directory
from pimms_partner_gateways.adapters import eau_grand_lyon
from pimms_partner_gateways.adapters.base import PartnerAdapter
from pimms_partner_gateways.adapters.registry import build_adapter
from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, Referral

GOLDEN = Path(__file__).parent.parent / "golden"
REFERRAL_ID = "3f2b8c1e-5d4a-4e8b-9c7d-1a2b3c4d5e6f"
CANCELLED_AT = datetime(2026, 11, 27, 9, 15, tzinfo=UTC)
NASTY = "=cmd|' /C calc'!A0 <b>Tarif</b> & frais; \"urgent\"\nDeuxième ligne"
CATEGORIES = {
    "edf": "energy_bill",
    "la-poste": "postal_service",
    "eau-grand-lyon": "water_bill",
    "sncf": "rail_travel",
    "prefecture-69": "naturalisation",
    "orange": "telecom",
    "banque-postale": "micro_credit",
}
SUMMARIES = {
    "eau-grand-lyon": "Facture d'eau très élevée après une fuite réparée",
    "sncf": "Remboursement refusé après la suppression d'un TER",
    "prefecture-69": "Dépôt d'un dossier de naturalisation",
    "orange": "Ligne coupée malgré le paiement de la facture",
    "banque-postale": "Demande de micro-crédit pour l'achat d'un véhicule",
}
EXTENSIONS = {"la-poste": "xml", "eau-grand-lyon": "csv"}
NATURALISATION_FILE = (
    "id_card",
    "birth_certificate",
    "proof_of_address",
    "tax_notices",
    "language_diploma",
)
DIRECTORY = load_directory()


def adapter(partner_id: str) -> PartnerAdapter:
    partner = DIRECTORY.get(partner_id)
    assert partner is not None
    found = build_adapter(partner)
    assert found is not None
    return found


def golden_name(partner_id: str, kind: str) -> str:
    return f"{partner_id.replace('-', '_')}_{kind}.{EXTENSIONS.get(partner_id, 'json')}"


def check_golden(name: str, payload: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("PIMMS_WRITE_GOLDEN") == "1":
        path.write_bytes(payload)
    assert payload == path.read_bytes(), f"{name} differs from its golden file"


@pytest.fixture
def partner_dossier(make_dossier: Callable[..., Dossier]) -> Callable[..., Dossier]:
    def build(partner_id: str, **changes: object) -> Dossier:
        changes.setdefault("summary", SUMMARIES.get(partner_id))
        dossier = make_dossier(category=CATEGORIES[partner_id], **changes)
        if partner_id == "prefecture-69":
            dossier = replace(dossier, documents=NATURALISATION_FILE)
        return dossier

    return build


def referral_of(dossier: Dossier, partner_id: str) -> Referral:
    return Referral(referral_id=REFERRAL_ID, case_id=dossier.case_id, partner_id=partner_id)


# --- outbound ---


@pytest.mark.parametrize("partner_id", list(CATEGORIES))
def test_referral_reminder_and_cancellation_are_the_golden_files(
    partner_id: str, partner_dossier: Callable[..., Dossier]
) -> None:
    dossier = partner_dossier(partner_id)
    referral = referral_of(dossier, partner_id)
    format_ = adapter(partner_id)
    check_golden(golden_name(partner_id, "referral"), format_.to_referral(dossier, referral))
    check_golden(
        golden_name(partner_id, "reminder"), format_.to_reminder(dossier, referral, number=2)
    )
    check_golden(
        golden_name(partner_id, "cancellation"), format_.to_cancellation(referral, CANCELLED_AT)
    )


@pytest.mark.parametrize("partner_id", list(CATEGORIES))
def test_a_summary_with_markup_separators_quotes_newline_and_a_formula_survives(
    partner_id: str, partner_dossier: Callable[..., Dossier]
) -> None:
    dossier = partner_dossier(
        partner_id, summary=NASTY, email="marie@example.org", email_consent=True
    )
    payload = adapter(partner_id).to_referral(dossier, referral_of(dossier, partner_id))
    check_golden(golden_name(partner_id, "special_characters"), payload)
    if partner_id == "prefecture-69":  # its format carries no summary: none is sent
        assert b"calc" not in payload
        return
    assert described(partner_id, payload) == (
        # in a spreadsheet's cell the formula is text; everywhere else the text is unchanged
        "'" + NASTY.replace("\n", "\r\n") if partner_id == "eau-grand-lyon" else NASTY
    )


def described(partner_id: str, payload: bytes) -> str:
    """The summary as the partner's own parser reads it back."""
    if partner_id == "la-poste":
        objet = ElementTree.fromstring(payload).find("{urn:laposte:mediation:pimms:1}objet")
        assert objet is not None
        return objet.text or ""
    if partner_id == "eau-grand-lyon":
        [row] = csv.reader(io.StringIO(payload.decode("iso-8859-1"), newline=""), delimiter=";")
        return row[8]
    data = json.loads(payload)
    return str(data.get("description", ""))


def test_an_export_file_holds_referrals_reminders_cancellations_and_any_script(
    make_dossier: Callable[..., Dossier],
) -> None:
    egl = eau_grand_lyon.ADAPTER
    summary = SUMMARIES["eau-grand-lyon"]
    marie = make_dossier(category="water_bill", summary=summary)
    arabic = make_dossier(
        category="water_bill",
        first_name="محمد",
        last_name="العلي",
        urgency="low",
        sms=False,
        summary="Compteur bloqué",
    )
    polish = make_dossier(
        category="water_bill", first_name="Łukasz", last_name="Żółć", urgency="normal"
    )
    lines = [
        egl.to_referral(marie, referral_of(marie, "eau-grand-lyon")),
        egl.to_referral(arabic, Referral("7d1e0c4b-2a9f-4f5e-8b3c-6d7e8f9a0b1c", "c", "x")),
        egl.to_referral(polish, Referral("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "c", "x")),
        egl.to_reminder(marie, referral_of(marie, "eau-grand-lyon"), number=1),
        egl.to_cancellation(referral_of(marie, "eau-grand-lyon"), CANCELLED_AT),
    ]
    export = eau_grand_lyon.assemble_export(lines)
    check_golden("eau_grand_lyon_export.csv", export)
    rows = list(csv.reader(io.StringIO(export.decode("iso-8859-1"), newline=""), delimiter=";"))
    assert rows[0] == list(eau_grand_lyon.OUTBOUND_HEADER)
    assert rows[2][3:5] == ["l`ly", "mhmd"]  # transliterated, never dropped
    assert rows[3][3:5] == ["Zólc", "Lukasz"]  # ISO-8859-1 letters kept, others transliterated
    assert rows[4][8].startswith("RELANCE 1 - ")
    assert rows[5][7:] == ["0", "ANNULATION"]
    assert export.count(b"\r\n") == 6
    assert b"\n" not in export.replace(b"\r\n", b"")


def test_export_file_names_are_the_specification_ones() -> None:
    at = datetime(2026, 11, 27, 9, 5, 7, tzinfo=UTC)
    name = eau_grand_lyon.export_file_name(at=at, sequence=3)
    assert name == "PIMMS_EGL_20261127100507_3.csv"
    assert eau_grand_lyon.temporary_name(name) == ".PIMMS_EGL_20261127100507_3.csv.part"
    assert not eau_grand_lyon.temporary_name(name).endswith(".csv")
    assert eau_grand_lyon.errors_file_name("REPONSES_1.csv") == "REPONSES_1.errors.csv"


# --- inbound ---

INBOUND: list[tuple[str, str, PartnerAnswer]] = [
    (
        "edf",
        "edf_response.json",
        PartnerAnswer(
            reference=REFERRAL_ID,
            status="completed",
            reported_at=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
            outcome="resolved",
        ),
    ),
    (
        "la-poste",
        "la_poste_response.xml",
        PartnerAnswer(
            reference=REFERRAL_ID,
            status="completed",
            reported_at=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
            outcome="resolved",
        ),
    ),
    (
        "sncf",
        "sncf_response.json",
        PartnerAnswer(
            reference=REFERRAL_ID,
            status="rejected",
            reported_at=datetime(2026, 11, 28, 8, 0, tzinfo=UTC),
            reason="out_of_scope",
        ),
    ),
    (
        "prefecture-69",
        "prefecture_69_response.json",
        PartnerAnswer(
            reference=REFERRAL_ID,
            status="on_hold",
            reported_at=datetime(2026, 12, 10, 9, 0, tzinfo=UTC),
            missing_documents=("tax_notices", "language_diploma"),
        ),
    ),
    (
        "orange",
        "orange_response.json",
        PartnerAnswer(
            reference=REFERRAL_ID,
            status="completed",
            reported_at=datetime(2026, 11, 30, 15, 30, tzinfo=UTC),
            outcome="visitor_unreachable",
        ),
    ),
    (
        "banque-postale",
        "banque_postale_response.json",
        PartnerAnswer(
            reference=REFERRAL_ID,
            status="completed",
            reported_at=datetime(2026, 12, 2, 10, 0, tzinfo=UTC),
            outcome="not_resolved",
        ),
    ),
]


@pytest.mark.parametrize(("partner_id", "name", "expected"), INBOUND)
def test_partner_answers_read_as_the_platform_words(
    partner_id: str, name: str, expected: PartnerAnswer
) -> None:
    read = adapter(partner_id).read_response((GOLDEN / name).read_bytes())
    assert read.answer == expected
    assert read.unknown_fields == frozenset()


def test_a_response_file_applies_good_lines_and_reports_bad_ones() -> None:
    result = eau_grand_lyon.read_response_file(
        (GOLDEN / "eau_grand_lyon_responses.csv").read_bytes()
    )
    assert [(a.line, a.answer.reference, a.answer.status) for a in result.answers] == [
        (2, REFERRAL_ID, "received"),
        (3, REFERRAL_ID, "completed"),
        (5, "7d1e0c4b-2a9f-4f5e-8b3c-6d7e8f9a0b1c", "rejected"),
    ]
    assert result.answers[1].answer.outcome == "resolved"
    assert result.answers[1].answer.reported_at == datetime(2026, 12, 3, 14, 5, tzinfo=UTC)
    assert result.answers[2].answer.reason == "other"
    assert [(b.line, b.reason) for b in result.bad_lines] == [
        (6, "unknown_status"),
        (7, "bad_date"),
        (8, "wrong_cell_count"),
        (9, "unknown_outcome"),
    ]
    bad = eau_grand_lyon.BadLine
    unknown = eau_grand_lyon.unknown_reference(result.answers[2])
    assert isinstance(unknown, bad)
    with_unknown = replace(result, bad_lines=(*result.bad_lines, unknown))
    check_golden(
        "eau_grand_lyon_responses.errors.csv", eau_grand_lyon.render_errors_file(with_unknown)
    )
