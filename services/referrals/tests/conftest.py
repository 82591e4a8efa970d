"""Builders of the messages referrals consumes, as intake and partner-gateways send them."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from pimms_contracts import topics
from pimms_contracts.v1.frontoffice import ContactConsent
from pimms_contracts.v1.internal import (
    IntakeCaseOpened,
    IntakeCaseWithdrawn,
    IntakeDocumentsAdded,
    PartnerDelivered,
    PartnerDeliveryFailed,
    PartnerMessageRef,
    PartnerStatusReported,
    SharedNeed,
    SharedVisitor,
)
from pimms_servicekit.messages import b64

AT = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)


@dataclass(frozen=True)
class PartnerRecord:
    """A partner's own message as it was read from its responses topic."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes

    @property
    def ref(self) -> PartnerMessageRef:
        # PartnerStatusReported still requires `source`; referrals no longer reads it.
        return PartnerMessageRef(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            key_b64=b64(self.key),
            value_b64=b64(self.value),
        )


class Build:
    """The events of one test, with fresh ids."""

    def __init__(self) -> None:
        self._offsets = itertools.count(100)
        self._numbers = itertools.count(uuid.uuid4().int % 900_000)

    def case_opened(
        self,
        *,
        category: str = "energy_bill",
        postal_code: str = "69008",
        documents: tuple[str, ...] = ("id_card",),
    ) -> IntakeCaseOpened:
        return IntakeCaseOpened.model_validate(
            {
                "case_id": str(uuid.uuid4()),
                "case_reference": f"LYON8-2026-{next(self._numbers):06d}",
                "submission_id": str(uuid.uuid4()),
                "site_id": "lyon-8",
                "mediator_id": "m-042",
                "channel": "front_desk",
                "submitted_at": "2026-11-27T09:30:00+01:00",
                "opened_at": "2026-11-27T09:30:01+01:00",
                "visitor": SharedVisitor(
                    first_name="Marie",
                    last_name="Dupont",
                    phone="+33612345678",
                    email=None,
                    postal_code=postal_code,
                    language="fr",
                    contact_consent=ContactConsent(sms=True, email=False),
                ).model_dump(),
                "need": SharedNeed(
                    category=category,  # type: ignore[arg-type]
                    summary="Facture impayée, risque de coupure avant la fin du mois",
                    urgency="high",
                    documents=documents,
                ).model_dump(),
            },
            strict=False,
        )

    def withdrawn(
        self, case: IntakeCaseOpened, reason: str = "visitor_request"
    ) -> IntakeCaseWithdrawn:
        return IntakeCaseWithdrawn.model_validate(
            {
                "case_id": case.case_id,
                "case_reference": case.case_reference,
                "reason": reason,
                "withdrawn_at": AT,
            },
            strict=False,
        )

    def documents_added(
        self, case: IntakeCaseOpened, added: tuple[str, ...]
    ) -> IntakeDocumentsAdded:
        return IntakeDocumentsAdded(
            case_id=case.case_id,
            case_reference=case.case_reference,
            added=added,
            documents=(*case.need.documents, *added),
            added_at=AT,
        )

    def delivered(
        self, case_id: str, referral_id: str, *, partner_id: str = "edf", kind: str = "referral"
    ) -> PartnerDelivered:
        return PartnerDelivered.model_validate(
            {
                "case_id": case_id,
                "referral_id": referral_id,
                "partner_id": partner_id,
                "kind": kind,
                "transport": "kafka",
                "delivered_at": AT,
            },
            strict=False,
        )

    def delivery_failed(
        self, case_id: str, referral_id: str, *, partner_id: str = "edf"
    ) -> PartnerDeliveryFailed:
        return PartnerDeliveryFailed.model_validate(
            {
                "case_id": case_id,
                "referral_id": referral_id,
                "partner_id": partner_id,
                "reason": "http_400",
                "failed_at": AT,
            },
            strict=False,
        )

    def edf_answer(self, referral_id: str, statut: str, **fields: Any) -> PartnerRecord:
        """EDF's own JSON answer on its responses topic (specs/partners.md)."""
        body = {
            "reference": referral_id,
            "statut": statut,
            **fields,
            "horodatage": "2026-11-28T10:00:00+01:00",
        }
        return PartnerRecord(
            topic=topics.partner_responses("edf"),
            partition=0,
            offset=next(self._offsets),
            key=referral_id.encode(),
            value=json.dumps(body).encode(),
        )

    def reported(
        self,
        case_id: str,
        referral_id: str,
        status: str,
        *,
        source: PartnerRecord | None = None,
        partner_id: str = "edf",
        outcome: str | None = None,
        reason: str | None = None,
        missing_documents: tuple[str, ...] = (),
        report_id: str | None = None,
    ) -> PartnerStatusReported:
        return PartnerStatusReported.model_validate(
            {
                "case_id": case_id,
                "referral_id": referral_id,
                "partner_id": partner_id,
                "status": status,
                "outcome": outcome,
                "reason": reason,
                "missing_documents": missing_documents,
                "reported_at": AT,
                "received_at": AT,
                "report_id": report_id or str(uuid.uuid4()),
            },
            strict=False,
        )


@pytest.fixture
def build() -> Build:
    """Builders of intake and gateway events with fresh ids."""
    return Build()
