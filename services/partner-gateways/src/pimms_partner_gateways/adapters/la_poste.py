"""La Poste: XML over Kafka (specs/partners.md, `la-poste`). Its French names stay in this module.

Outgoing XML is written line by line with explicit escaping, so that the bytes are exactly the
specification's layout. Incoming XML is parsed with defusedxml, refusing any DTD or entity (XXE,
billion laughs) before it is read.
"""

from __future__ import annotations

from datetime import datetime
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pimms_contracts.v1.common import CompletionOutcome, PartnerReportedStatus, RejectionReason

from pimms_partner_gateways.adapters.base import (
    BadPartnerMessage,
    check_reference,
    check_reminder_number,
    parse_partner_time,
    partner_time,
    quoted_word,
    safe_names,
)
from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, ReadAnswer, Referral

NAMESPACE = "urn:laposte:mediation:pimms:1"
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
PRIORITES = {"high": "haute", "normal": "normale", "low": "basse"}

ETATS: dict[str, PartnerReportedStatus] = {
    "recue": "received",
    "acceptee": "accepted",
    "en-cours": "in_progress",
    "attente-usager": "on_hold",
    "traitee": "completed",
    "rejetee": "rejected",
}
ISSUES: dict[str, CompletionOutcome] = {
    "favorable": "resolved",
    "defavorable": "not_resolved",
    "injoignable": "visitor_unreachable",
}
MOTIFS_DE_REJET: dict[str, RejectionReason] = {
    "hors-perimetre": "out_of_scope",
    "doublon": "duplicate",
}
_ATTRIBUTES = frozenset({"reference", "etat", "horodatage"})
_CHILDREN = frozenset({"issue", "motif", "commentaire"})
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


class LaPosteAdapter:
    """La Poste's XML messages."""

    format = "la-poste"

    def to_referral(self, dossier: Dossier, referral: Referral) -> bytes:
        """The `<demande>`, byte for byte in the specification's layout."""
        return _demande(dossier, referral, relance=None)

    def to_reminder(self, dossier: Dossier, referral: Referral, *, number: int) -> bytes:
        """The `<demande>` again with attribute `relance="<n>"`."""
        return _demande(dossier, referral, relance=check_reminder_number(number))

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """`<annulation xmlns="…" reference="…" horodatage="…"/>`, as a document of its own."""
        element = (
            f"<annulation xmlns={_attr(NAMESPACE)} reference={_attr(referral.referral_id)}"
            f" horodatage={_attr(partner_time(at))}/>"
        )
        return f"{DECLARATION}\n{element}".encode()

    def from_response(self, value: bytes | None) -> PartnerAnswer:
        """One of La Poste's `<reponse>`s; BadPartnerMessage says precisely what is wrong."""
        return self.read_response(value).answer

    def read_response(self, value: bytes | None) -> ReadAnswer:
        """A `<reponse>` and the names of attributes and elements La Poste added (`@name`)."""
        root = _parse(value)
        if root.tag != _name("reponse"):
            raise BadPartnerMessage(
                "schema_invalid", f"the root element must be <reponse> in namespace {NAMESPACE}"
            )
        unknown = {f"@{name}" for name in safe_names(map(_local, set(root.attrib) - _ATTRIBUTES))}
        reference = check_reference(root.get("reference"), field="attribute reference")
        etat = root.get("etat")
        if not etat:
            raise BadPartnerMessage("schema_invalid", "attribute etat is missing")
        reported_at = parse_partner_time(root.get("horodatage"), field="attribute horodatage")
        children, unknown_children = _children(root)
        status = ETATS.get(etat)
        if status is None:
            raise BadPartnerMessage(
                "unknown_status", f"etat {quoted_word(etat)} is not one of {', '.join(ETATS)}"
            )
        outcome: CompletionOutcome | None = None
        reason: RejectionReason | None = None
        if status == "completed":
            issue = children.get("issue")
            if not issue:
                raise BadPartnerMessage("schema_invalid", "etat traitee requires an <issue>")
            outcome = ISSUES.get(issue)
            if outcome is None:
                raise BadPartnerMessage(
                    "unknown_outcome",
                    f"<issue> {quoted_word(issue)} is not one of {', '.join(ISSUES)}",
                )
        elif status == "rejected":
            reason = MOTIFS_DE_REJET.get(children.get("motif") or "", "other")
        answer = PartnerAnswer(
            reference=reference,
            status=status,
            reported_at=reported_at,
            outcome=outcome,
            reason=reason,
        )
        return ReadAnswer(
            answer=answer, unknown_fields=frozenset(unknown) | safe_names(unknown_children)
        )


def _demande(dossier: Dossier, referral: Referral, *, relance: int | None) -> bytes:
    phone = dossier.phone_for_partner
    reminder = f" relance={_attr(str(relance))}" if relance is not None else ""
    lines = [
        DECLARATION,
        f"<demande xmlns={_attr(NAMESPACE)} reference={_attr(referral.referral_id)}"
        f" dossier={_attr(dossier.case_reference)}"
        f" horodatage={_attr(dossier.submitted_at.isoformat())}{reminder}>",
        "  <usager>",
        f"    <nom>{_text(dossier.last_name)}</nom>",
        f"    <prenom>{_text(dossier.first_name)}</prenom>",
        *([f"    <telephone>{_text(phone)}</telephone>"] if phone is not None else []),
        f"    <codePostal>{_text(dossier.postal_code)}</codePostal>",
        "  </usager>",
        f"  <objet priorite={_attr(PRIORITES[dossier.urgency])}>{_text(dossier.summary)}</objet>",
        f"  <site code={_attr(dossier.site_id)} mediateur={_attr(dossier.mediator_id)}/>",
        "</demande>",
    ]
    return "\n".join(lines).encode()


def _text(value: str) -> str:
    return escape(value)


def _attr(value: str) -> str:
    """A double-quoted attribute value (quoteattr would switch to single quotes)."""
    return f'"{escape(value, _ATTRIBUTE_ENTITIES)}"'


def _name(local: str) -> str:
    return f"{{{NAMESPACE}}}{local}"


def _parse(value: bytes | None) -> Element:
    if not value:
        raise BadPartnerMessage("malformed_xml", "the message has no value")
    try:
        return fromstring(value, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise BadPartnerMessage(
            "forbidden_xml",
            f"XML with a DTD, entities or external references is refused ({type(exc).__name__})",
        ) from None
    except ParseError as exc:
        line, column = exc.position
        raise BadPartnerMessage(
            "malformed_xml", f"the value is not well-formed XML (line {line}, column {column})"
        ) from None
    except (ValueError, LookupError):
        raise BadPartnerMessage("malformed_xml", "the value is not readable XML") from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(root: Element) -> tuple[dict[str, str], set[str]]:
    """The text of <issue>, <motif> and <commentaire>, each at most once; other elements' names."""
    found: dict[str, str] = {}
    unknown: set[str] = set()
    for child in root:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        local = _local(child.tag)
        if local in _CHILDREN and child.tag != _name(local):
            raise BadPartnerMessage(
                "schema_invalid",
                f"element {quoted_word(local)} in <reponse> must be in namespace {NAMESPACE}",
            )
        if local not in _CHILDREN:
            unknown.add(local)
            continue
        if local in found:
            raise BadPartnerMessage("schema_invalid", f"<{local}> appears more than once")
        if len(child) or child.attrib:
            raise BadPartnerMessage("schema_invalid", f"<{local}> must contain text only")
        found[local] = (child.text or "").strip()
    return found, unknown


ADAPTER = LaPosteAdapter()
