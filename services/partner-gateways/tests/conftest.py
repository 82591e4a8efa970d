"""Fixtures of the gateway tests: the specification's example visitor, as events and a dossier."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from pimms_contracts.v1.frontoffice import ContactConsent
from pimms_contracts.v1.internal import IntakeCaseOpened, SharedNeed, SharedVisitor
from pimms_contracts.v1.lifecycle import ReferralCancelled, ReferralRequested
from pimms_partner_gateways.domain.model import Dossier, Referral, dossier_from_case

GOLDEN = Path(__file__).with_name("golden")
REFERRAL_ID = "3f2b8c1e-5d4a-4e8b-9c7d-1a2b3c4d5e6f"
CASE_REFERENCE = "LYON8-2026-000123"

SUMMARIES = {
    "energy_bill": "Facture impayée, risque de coupure avant la fin du mois",
    "postal_service": "Colis non distribué depuis trois semaines",
}

CaseFactory = Callable[..., IntakeCaseOpened]


def _case_opened(
    *,
    case_id: str | None = None,
    case_reference: str = CASE_REFERENCE,
    category: str = "energy_bill",
    urgency: str = "high",
    summary: str | None = None,
    first_name: str = "Marie",
    last_name: str = "Dupont",
    phone: str | None = "+33612345678",
    email: str | None = None,
    sms: bool = True,
    email_consent: bool = False,
    submitted_at: str = "2026-11-27T09:30:00+01:00",
    mediator_id: str = "m-042",
    documents: tuple[str, ...] = ("id_card", "last_bill"),
) -> IntakeCaseOpened:
    """IntakeCaseOpened for the example need of specs/front-office.md, as intake shares it."""
    data: dict[str, Any] = {
        "case_id": case_id or str(uuid4()),
        "case_reference": case_reference,
        "submission_id": str(uuid4()),
        "site_id": "lyon-8",
        "mediator_id": mediator_id,
        "channel": "front_desk",
        "submitted_at": submitted_at,
        "opened_at": "2026-11-27T08:30:01+00:00",
        "visitor": SharedVisitor(
            first_name=first_name,
            last_name=last_name,
            phone=phone,
            email=email,
            postal_code="69008",
            language="fr",
            contact_consent=ContactConsent(sms=sms, email=email_consent),
        ).model_dump(),
        "need": SharedNeed(
            category=category,  # type: ignore[arg-type]
            summary=summary or SUMMARIES.get(category, "Besoin d'aide"),
            urgency=urgency,  # type: ignore[arg-type]
            documents=documents,
        ).model_dump(),
    }
    return IntakeCaseOpened.model_validate(data, strict=False)


@pytest.fixture
def case_opened() -> CaseFactory:
    """Build IntakeCaseOpened events: `case_opened(category="postal_service", sms=False)`."""
    return _case_opened


@pytest.fixture
def make_dossier() -> Callable[..., Dossier]:
    """Build dossiers as the gateway stores them, from the same arguments as `case_opened`."""
    return lambda **changes: dossier_from_case(_case_opened(**changes))


@pytest.fixture
def dossier() -> Dossier:
    """The specification's example: Marie Dupont, SMS consent only, energy bill, high urgency."""
    return dossier_from_case(_case_opened())


@pytest.fixture
def referral(dossier: Dossier) -> Referral:
    """The golden files' referral."""
    return Referral(referral_id=REFERRAL_ID, case_id=dossier.case_id, partner_id="edf")


def _referral_event(
    model: type[Any], case: IntakeCaseOpened, partner_id: str, referral_id: str | None, **extra: Any
) -> Any:
    return model(
        case_id=case.case_id,
        case_reference=case.case_reference,
        site_id=case.site_id,
        occurred_at=datetime.fromisoformat("2026-11-27T08:31:00+00:00"),
        referral_id=UUID(referral_id) if referral_id else uuid4(),
        partner_id=partner_id,
        **extra,
    )


@pytest.fixture
def referral_requested() -> Callable[..., ReferralRequested]:
    """ReferralRequested for a case: `referral_requested(case, "edf")`."""

    def build(
        case: IntakeCaseOpened, partner_id: str, referral_id: str | None = None
    ) -> ReferralRequested:
        event: ReferralRequested = _referral_event(ReferralRequested, case, partner_id, referral_id)
        return event

    return build


@pytest.fixture
def referral_cancelled() -> Callable[..., ReferralCancelled]:
    """ReferralCancelled for a referral of a case."""

    def build(case: IntakeCaseOpened, partner_id: str, referral_id: str) -> ReferralCancelled:
        event: ReferralCancelled = _referral_event(
            ReferralCancelled, case, partner_id, referral_id, reason="visitor_request"
        )
        return event

    return build


def golden(name: str) -> bytes:
    """A golden file's exact bytes."""
    return (GOLDEN / name).read_bytes()


@pytest.fixture
def read_golden() -> Callable[[str], bytes]:
    """Read a golden file's exact bytes."""
    return golden
