"""Data minimisation and isolation: each payload holds exactly its format's fields, and only its
own referral's data (specs/partners.md: a partner receives only the fields listed in its format)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from defusedxml import ElementTree
from pimms_contracts.partners import load_directory
from pimms_partner_gateways.adapters import eau_grand_lyon
from pimms_partner_gateways.adapters.base import PartnerAdapter
from pimms_partner_gateways.adapters.registry import build_adapter
from pimms_partner_gateways.domain.model import Dossier, Referral

DIRECTORY = load_directory()
AT = datetime(2026, 11, 27, 9, 15, tzinfo=UTC)
CATEGORIES = {
    "edf": "energy_bill",
    "la-poste": "postal_service",
    "eau-grand-lyon": "water_bill",
    "sncf": "rail_travel",
    "prefecture-69": "naturalisation",
    "orange": "telecom",
    "banque-postale": "banking",
}
REFERRAL_FIELDS: dict[str, set[str]] = {
    "edf": {
        "reference", "dossierPimms", "dateDemande", "motif", "urgence", "client.nom",
        "client.prenom", "client.telephone", "client.email", "client.codePostal",
        "pointAccueil.code", "pointAccueil.mediateur", "description",
    },
    "la-poste": {
        "demande@reference", "demande@dossier", "demande@horodatage", "usager.nom",
        "usager.prenom", "usager.telephone", "usager.codePostal", "objet", "objet@priorite",
        "site@code", "site@mediateur",
    },
    "eau-grand-lyon": set(eau_grand_lyon.OUTBOUND_HEADER),
    "sncf": {
        "referral_id", "case_reference", "requested_at", "topic", "priority",
        "customer.first_name", "customer.last_name", "customer.phone", "customer.email",
        "customer.postal_code", "customer.language", "description", "site.id",
        "site.mediator_id",
    },
    "prefecture-69": {
        "numeroDemande", "dossierPimms", "dateDepot", "demandeur.nom", "demandeur.prenom",
        "demandeur.telephone", "demandeur.email", "demandeur.codePostal", "piecesFournies",
        "complet", "pointAccueil",
    },
    "orange": {
        "reference", "dossier", "dateDemande", "categorie", "priorite", "client.nom",
        "client.prenom", "client.telephone", "client.email", "client.codePostal",
        "pointAccueil.code", "pointAccueil.mediateur", "description",
    },
    "banque-postale": {
        "referral_id", "case_reference", "requested_at", "topic", "priority",
        "customer.first_name", "customer.last_name", "customer.phone", "customer.email",
        "customer.postal_code", "customer.language", "description", "site.id",
        "site.mediator_id",
    },
}  # fmt: skip
REMINDER_FIELD = {
    "edf": "relance",
    "la-poste": "demande@relance",
    "sncf": "reminder",
    "prefecture-69": "relance",
    "orange": "relance",
    "banque-postale": "reminder",
}
CANCELLATION_FIELDS: dict[str, set[str]] = {
    "edf": {"reference", "statut", "horodatage"},
    "la-poste": {"annulation@reference", "annulation@horodatage"},
    "eau-grand-lyon": set(eau_grand_lyon.OUTBOUND_HEADER),
    "sncf": {"referral_id", "status", "at"},
    "prefecture-69": {"numeroDemande", "etat", "horodatage"},
    "orange": {"reference", "statut", "horodatage"},
    "banque-postale": {"referral_id", "status", "at"},
}


def adapter(partner_id: str) -> PartnerAdapter:
    partner = DIRECTORY.get(partner_id)
    assert partner is not None
    found = build_adapter(partner)
    assert found is not None
    return found


def fields_of(partner_id: str, payload: bytes) -> set[str]:
    """The field names a payload carries (nested as `a.b`, XML attributes as `element@name`)."""
    if partner_id == "la-poste":
        root = ElementTree.fromstring(payload)
        found = {f"{_local(root.tag)}@{name}" for name in root.attrib if name != "xmlns"}
        for child in root:
            found |= _xml_fields(child, "")
        return found
    if partner_id == "eau-grand-lyon":
        data = eau_grand_lyon.header_line() + payload
        [header, row] = csv.reader(
            io.StringIO(data.decode("iso-8859-1"), newline=""), delimiter=";"
        )
        assert len(row) == len(header)
        return set(header)
    return _json_fields(json.loads(payload), "")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _xml_fields(element: Any, prefix: str) -> set[str]:
    name = prefix + _local(element.tag)
    found = {f"{_local(element.tag)}@{attr}" for attr in element.attrib}
    if len(element):
        for child in element:
            found |= _xml_fields(child, name + ".")
    elif element.text is not None:
        found.add(name)
    return found


def _json_fields(data: dict[str, Any], prefix: str) -> set[str]:
    found: set[str] = set()
    for name, value in data.items():
        if isinstance(value, dict):
            found |= _json_fields(value, f"{prefix}{name}.")
        else:
            found.add(prefix + name)
    return found


@pytest.fixture
def consenting(make_dossier: Callable[..., Dossier]) -> Callable[[str], Dossier]:
    """A visitor who consented to everything: every optional field is present."""
    return lambda partner_id: make_dossier(
        category=CATEGORIES[partner_id], email="marie@example.org", email_consent=True
    )


@pytest.mark.parametrize("partner_id", list(CATEGORIES))
def test_each_payload_holds_exactly_its_formats_fields(
    partner_id: str, consenting: Callable[[str], Dossier]
) -> None:
    dossier = consenting(partner_id)
    referral = Referral("r-1", dossier.case_id, partner_id)
    format_ = adapter(partner_id)
    assert (
        fields_of(partner_id, format_.to_referral(dossier, referral)) == REFERRAL_FIELDS[partner_id]
    )
    reminder = fields_of(partner_id, format_.to_reminder(dossier, referral, number=1))
    extra = {REMINDER_FIELD[partner_id]} if partner_id in REMINDER_FIELD else set()
    assert reminder == REFERRAL_FIELDS[partner_id] | extra
    assert (
        fields_of(partner_id, format_.to_cancellation(referral, AT))
        == CANCELLATION_FIELDS[partner_id]
    )


@pytest.mark.parametrize("partner_id", list(CATEGORIES))
def test_no_contact_leaves_without_consent_and_internal_ids_never_leave(
    partner_id: str, make_dossier: Callable[..., Dossier]
) -> None:
    dossier = make_dossier(
        category=CATEGORIES[partner_id],
        email="marie@example.org",
        email_consent=False,
        sms=False,
        case_id="0d4c2b1a-9e8f-4a7b-8c6d-5e4f3a2b1c0d",
    )
    payload = adapter(partner_id).to_referral(dossier, Referral("r-1", dossier.case_id, partner_id))
    for secret in ("+33612345678", "marie@example.org", dossier.case_id, "last_bill"):
        if partner_id == "prefecture-69" and secret == "last_bill":
            continue  # the prefecture's format lists the documents the visitor brought
        assert secret.encode() not in payload


def test_a_partners_messages_hold_only_its_own_referral(
    make_dossier: Callable[..., Dossier],
) -> None:
    mine = make_dossier(category="water_bill", first_name="Marie", last_name="Dupont")
    other = replace(
        make_dossier(category="energy_bill", first_name="Karim", last_name="Benali"),
        case_reference="LYON3-2026-000999",
        phone="+33799999999",
    )
    egl_lines = [
        adapter("eau-grand-lyon").to_referral(mine, Referral("r-mine", mine.case_id, "eau")),
        adapter("eau-grand-lyon").to_cancellation(Referral("r-mine-2", mine.case_id, "eau"), AT),
    ]
    export = eau_grand_lyon.assemble_export(egl_lines)
    edf = adapter("edf").to_referral(other, Referral("r-other", other.case_id, "edf"))
    for marker in (b"Karim", b"Benali", b"r-other", b"LYON3-2026-000999", b"+33799999999"):
        assert marker not in export
    for marker in (b"Marie", b"Dupont", b"r-mine", b"LYON8-2026-000123"):
        assert marker not in edf
