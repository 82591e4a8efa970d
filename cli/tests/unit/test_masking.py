"""What support staff see of a payload: structure and codes, never a name, phone or summary."""

from __future__ import annotations

import json

from pimms_cli.masking import MASK, mask_payload
from pimms_contracts.examples import need_submitted

PERSONAL = (
    "Marie",
    "Dupont",
    "DUPONT",
    "+33612345678",
    "06 12 34 56 78",
    "marie.dupont@example.org",
    "69008",
    "Facture impayée",
    "Colis non distribué",
)


def assert_no_personal_data(text: str) -> None:
    leaked = [p for p in PERSONAL if p in text]
    assert not leaked, f"{leaked} in {text}"


def test_a_front_office_need_keeps_its_codes_and_loses_the_visitor() -> None:
    need = need_submitted(visitor__email="marie.dupont@example.org")

    shown = mask_payload(json.dumps(need).encode())

    assert shown.kind == "json"
    assert_no_personal_data(shown.text)
    masked = json.loads(shown.text)
    assert masked["submission_id"] == need["submission_id"]
    assert masked["need"]["category"] == "energy_bill"
    assert masked["visitor"]["first_name"] == MASK
    assert masked["visitor"]["postal_code"] == MASK
    assert masked["visitor"]["contact_consent"] == {"sms": True, "email": False}


def test_an_edf_referral_loses_its_client_and_description() -> None:
    referral = {
        "reference": "r-1",
        "dossierPimms": "LYON8-2026-000001",
        "client": {"nom": "DUPONT", "prenom": "Marie", "telephone": "+33612345678",
                   "email": None, "codePostal": "69008"},
        "description": "Facture impayée, risque de coupure",
        "motif": "DIFFICULTE_PAIEMENT",
    }  # fmt: skip

    shown = mask_payload(json.dumps(referral).encode())

    assert_no_personal_data(shown.text)
    assert "LYON8-2026-000001" in shown.text
    assert "DIFFICULTE_PAIEMENT" in shown.text


def test_phones_and_e_mails_in_free_text_under_any_name_are_masked() -> None:
    body = {"note_from_tool": "rappeler au 06 12 34 56 78 ou marie.dupont@example.org", "n": 3}

    shown = mask_payload(json.dumps(body).encode())

    assert_no_personal_data(shown.text)
    assert "rappeler au" in shown.text


def test_a_la_poste_demande_keeps_its_references_and_loses_the_usager() -> None:
    xml = (
        '<demande xmlns="urn:laposte:mediation:pimms:1" reference="r-2" dossier="BREST-2026-000001"'
        ' horodatage="2026-11-27T09:30:00+01:00"><usager><nom>Dupont</nom><prenom>Marie</prenom>'
        "<telephone>+33612345678</telephone><codePostal>69008</codePostal></usager>"
        '<objet priorite="haute">Colis non distribué &amp; perdu</objet>'
        '<site code="lyon-8" mediateur="m-042"/></demande>'
    ).encode()

    shown = mask_payload(xml)

    assert shown.kind == "xml"
    assert_no_personal_data(shown.text)
    assert 'dossier="BREST-2026-000001"' in shown.text
    assert 'priorite="haute"' in shown.text
    assert 'xmlns="urn:laposte:mediation:pimms:1"' in shown.text


def test_xml_with_a_dtd_is_not_expanded_but_shown_as_a_shape() -> None:
    bomb = b'<!DOCTYPE x [<!ENTITY a "Dupont">]><x>&a;</x>'

    shown = mask_payload(bomb)

    assert shown.kind == "text"
    assert_no_personal_data(shown.text)


def test_a_payload_that_is_neither_json_nor_xml_shows_only_its_shape() -> None:
    shown = mask_payload(b'{"visitor": {"first_name": "Marie", "phone": "+33612345678"')

    assert shown.kind == "text"
    assert_no_personal_data(shown.text)
    assert shown.text.startswith('{"xxxxxxx": {"')
