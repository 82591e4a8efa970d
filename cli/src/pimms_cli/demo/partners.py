"""Partner operators, simulated from specs/partners.md alone, in their own formats.

Written from the spec, never from the gateway's code: if the gateway drifts from the agreement,
the demo notices. One class per partner; adding a Kafka partner is one class and one registry line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from xml.etree.ElementTree import Element, SubElement, tostring

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


class PartnerSimulator(Protocol):
    """A partner reading its feed and answering, in its own format, over Kafka."""

    partner_id: str

    def read(self, value: bytes) -> FeedMessage | None:
        """What the partner understands of a feed message (None: not for it to act on)."""
        ...

    def answer(self, *, reference: str, answer: Answer, at: datetime) -> bytes:
        """The partner's answer, as bytes on its responses topic."""
        ...


class Edf:
    """EDF: JSON both ways."""

    partner_id = "edf"

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


def edf(statut: str, **details: str) -> Answer:
    """An EDF answer: `edf("CLOS", resultat="SOLUTION_TROUVEE")`."""
    return Answer(statut, details)


def poste(etat: str, **details: str) -> Answer:
    """A La Poste answer: `poste("traitee", issue="favorable")`."""
    return Answer(etat, details)


SIMULATORS: dict[str, PartnerSimulator] = {p.partner_id: p for p in (Edf(), LaPoste())}
"""The partners the demo plays, by partner id; each reads `partner_referrals(id)`."""
