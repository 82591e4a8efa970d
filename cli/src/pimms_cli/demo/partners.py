"""Partner operators, simulated from specs/partners.md (and PARTNERS.md) alone, in their formats.

Written from the specs, never from the gateway's code: if the gateway drifts from the agreement,
the demo notices. One class per partner, pure (bytes in, bytes out); how the bytes travel is the
partner's `transport`: its Kafka feed, its folders (`transports.FileDropPartner`) or its HTTP
endpoint (`transports.WebhookPartner`). Adding a partner is one class and one registry line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol
from xml.etree.ElementTree import Element, SubElement, tostring
from zoneinfo import ZoneInfo

from defusedxml import ElementTree

from pimms_cli.demo.story import Answer

LA_POSTE_NS = "urn:laposte:mediation:pimms:1"


class FeedKind(StrEnum):
    """What a message on a partner's referrals feed is."""

    REFERRAL = "referral"
    REMINDER = "reminder"
    CANCELLATION = "cancellation"


@dataclass(frozen=True)
class FeedMessage:
    """A message the partner read on its referrals feed."""

    kind: FeedKind
    reference: str
    case_reference: str | None


Transport = Literal["kafka", "file_drop", "webhook"]


class PartnerSimulator(Protocol):
    """A partner reading what it is sent and answering, in its own format and transport."""

    partner_id: str
    transport: Transport

    def read(self, value: bytes) -> FeedMessage | None:
        """What the partner understands of a feed message (None: not for it to act on)."""
        ...

    def answer(self, *, reference: str, answer: Answer, at: datetime) -> bytes:
        """The partner's answer, as bytes on its responses topic."""
        ...


class Edf:
    """EDF: JSON both ways."""

    partner_id = "edf"
    transport: Transport = "kafka"

    def read(self, value: bytes) -> FeedMessage | None:
        """A referral, a reminder (`relance`) or a cancellation (`statut` `ANNULE`)."""
        body: Any = json.loads(value)
        reference = body.get("reference")
        if not isinstance(reference, str):
            return None
        if body.get("statut") == "ANNULE":
            return FeedMessage(FeedKind.CANCELLATION, reference, None)
        kind = FeedKind.REMINDER if "relance" in body else FeedKind.REFERRAL
        return FeedMessage(kind, reference, body.get("dossierPimms"))

    def answer(self, *, reference: str, answer: Answer, at: datetime) -> bytes:
        """`{"reference", "statut", ..., "horodatage"}`."""
        body = {
            "reference": reference,
            "statut": answer.status,
            **answer.details,
            "horodatage": at.isoformat(timespec="seconds"),
        }
        return json.dumps(body, ensure_ascii=False).encode()


class LaPoste:
    """La Poste: XML both ways."""

    partner_id = "la-poste"
    transport: Transport = "kafka"

    def read(self, value: bytes) -> FeedMessage | None:
        """A `<demande>` (with `relance` when a reminder) or an `<annulation>`."""
        root = ElementTree.fromstring(value)
        reference = root.get("reference")
        if reference is None:
            return None
        if root.tag == f"{{{LA_POSTE_NS}}}annulation":
            return FeedMessage(FeedKind.CANCELLATION, reference, None)
        kind = FeedKind.REMINDER if root.get("relance") else FeedKind.REFERRAL
        return FeedMessage(kind, reference, root.get("dossier"))

    def answer(self, *, reference: str, answer: Answer, at: datetime) -> bytes:
        """`<reponse reference etat horodatage>` with one child element per detail."""
        # Unprefixed names under a declared default namespace: what La Poste writes. (ElementTree's
        # `default_namespace` refuses the unqualified attributes the format has.)
        root = Element(
            "reponse",
            {
                "xmlns": LA_POSTE_NS,
                "reference": reference,
                "etat": answer.status,
                "horodatage": at.isoformat(timespec="seconds"),
            },
        )
        for name, text in answer.details.items():
            SubElement(root, name).text = text
        xml: bytes = tostring(root, encoding="utf-8")
        return xml


class Prefecture:
    """Préfecture du Rhône: JSON on Kafka, `numeroDemande` and `etat`."""

    partner_id = "prefecture-69"
    transport: Transport = "kafka"

    def read(self, value: bytes) -> FeedMessage | None:
        """A file (with `relance` when a reminder) or a withdrawal (`etat` `RETIRE`)."""
        body: Any = json.loads(value)
        reference = body.get("numeroDemande")
        if not isinstance(reference, str):
            return None
        if body.get("etat") == "RETIRE":
            return FeedMessage(FeedKind.CANCELLATION, reference, None)
        kind = FeedKind.REMINDER if "relance" in body else FeedKind.REFERRAL
        return FeedMessage(kind, reference, body.get("dossierPimms"))

    def answer(self, *, reference: str, answer: Answer, at: datetime) -> bytes:
        """`{"numeroDemande", "etat", "piecesDemandees"?, "horodatage"}`."""
        body: dict[str, Any] = {"numeroDemande": reference, "etat": answer.status}
        if "piecesDemandees" in answer.details:
            body["piecesDemandees"] = answer.details["piecesDemandees"].split(",")
        body["horodatage"] = at.isoformat(timespec="seconds")
        return json.dumps(body).encode()


class DeclaredJson:
    """A partner whose JSON layout is declared by its field names (PARTNERS.md "mapped-json"):
    the same reading and answering, only the names differ."""

    partner_id: str
    transport: Transport
    reference_field: str
    status_field: str
    cancelled_status: str
    reminder_field: str
    dossier_field: str
    time_field: str

    def read(self, value: bytes) -> FeedMessage | None:
        """A referral (a reminder when it has the reminder field) or a cancellation."""
        body: Any = json.loads(value)
        reference = body.get(self.reference_field)
        if not isinstance(reference, str):
            return None
        if body.get(self.status_field) == self.cancelled_status:
            return FeedMessage(FeedKind.CANCELLATION, reference, None)
        kind = FeedKind.REMINDER if self.reminder_field in body else FeedKind.REFERRAL
        return FeedMessage(kind, reference, body.get(self.dossier_field))

    def answer(self, *, reference: str, answer: Answer, at: datetime) -> bytes:
        """`{<reference>, <status>, details..., <time>}`."""
        body = {self.reference_field: reference, self.status_field: answer.status}
        body.update(answer.details)
        body[self.time_field] = at.isoformat(timespec="seconds")
        return json.dumps(body, ensure_ascii=False).encode()


class Orange(DeclaredJson):
    """Orange: JSON on Kafka, its layout declared in the directory (PARTNERS.md):
    `{"reference", "statut", "motif"?, "commentaire"?, "horodatage"}`, `relance` in reminders,
    `statut` `ANNULEE` for a cancellation."""

    partner_id = "orange"
    transport: Transport = "kafka"
    reference_field = "reference"
    status_field = "statut"
    cancelled_status = "ANNULEE"
    reminder_field = "relance"
    dossier_field = "dossier"
    time_field = "horodatage"


class EauGrandLyon:
    """Eau du Grand Lyon: CSV lines (ISO-8859-1, `;`, CRLF) in export and response files."""

    partner_id = "eau-grand-lyon"
    transport: Transport = "file_drop"
    encoding = "iso-8859-1"
    header = "REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE"

    def read(self, value: bytes) -> FeedMessage | None:
        """One line of an export: a referral, a reminder (`RELANCE n - `) or a cancellation."""
        rows = list(csv.reader(io.StringIO(value.decode(self.encoding), newline=""), delimiter=";"))
        if not rows or len(rows[0]) != 9:
            return None
        reference, dossier, *_, urgence, description = rows[0]
        if urgence == "0" and description == "ANNULATION":
            return FeedMessage(FeedKind.CANCELLATION, reference, None)
        kind = FeedKind.REMINDER if description.startswith("RELANCE ") else FeedKind.REFERRAL
        return FeedMessage(kind, reference, dossier)

    def answer(self, *, reference: str, answer: Answer, at: datetime) -> bytes:
        """`REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE`, the date `JJ/MM/AAAA HH:MM` in Paris."""
        date = at.astimezone(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")
        cells = [reference, answer.status, date, answer.details.get("motif", "")]
        cells.append(answer.details.get("commentaire", ""))
        out = io.StringIO()
        csv.writer(out, delimiter=";", lineterminator="\r\n").writerow(cells)
        return out.getvalue().encode(self.encoding, errors="replace")


class SignedWebhookJson(DeclaredJson):
    """SNCF's JSON (and La Banque Postale's, declared alike in the directory), over webhooks:
    `{"referral_id", "status", "outcome"?, "reason"?, "comment"?, "at"}`, `reminder` in reminders,
    `status` `cancelled` for a cancellation."""

    partner_id = "sncf"
    transport: Transport = "webhook"
    reference_field = "referral_id"
    status_field = "status"
    cancelled_status = "cancelled"
    reminder_field = "reminder"
    dossier_field = "case_reference"
    time_field = "at"


class Sncf(SignedWebhookJson):
    """SNCF Voyageurs."""

    partner_id = "sncf"


class BanquePostale(SignedWebhookJson):
    """La Banque Postale (a mapped-json partner on a signed webhook)."""

    partner_id = "banque-postale"


def edf(statut: str, **details: str) -> Answer:
    """An EDF answer: `edf("CLOS", resultat="SOLUTION_TROUVEE")`."""
    return Answer(statut, details)


def poste(etat: str, **details: str) -> Answer:
    """A La Poste answer: `poste("traitee", issue="favorable")`."""
    return Answer(etat, details)


def egl(statut: str, **details: str) -> Answer:
    """An Eau du Grand Lyon line: `egl("TRAITE", motif="RESOLU")`."""
    return Answer(statut, details)


def sncf(status: str, **details: str) -> Answer:
    """An SNCF (or La Banque Postale) answer: `sncf("done", outcome="resolved")`."""
    return Answer(status, details)


def prefecture(etat: str, **details: str) -> Answer:
    """A Préfecture du Rhône answer: `prefecture("DECISION_RENDUE")`."""
    return Answer(etat, details)


def orange(statut: str, **details: str) -> Answer:
    """An Orange answer: `orange("RESOLUE")`."""
    return Answer(statut, details)


SIMULATORS: dict[str, PartnerSimulator] = {
    p.partner_id: p
    for p in (
        Edf(),
        LaPoste(),
        Prefecture(),
        Orange(),
        EauGrandLyon(),
        Sncf(),
        BanquePostale(),
    )
}
"""The partners the demo plays, by partner id (Kafka ones read `partner_referrals(id)`)."""


def kafka_partners(simulators: dict[str, PartnerSimulator]) -> list[str]:
    """The simulated partners on a Kafka feed."""
    return [p for p, s in simulators.items() if s.transport == "kafka"]
