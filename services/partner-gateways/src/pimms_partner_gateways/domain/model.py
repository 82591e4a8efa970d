"""What the gateway knows and decides, in the platform's words (partner words live in adapters)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pimms_contracts.v1.common import CompletionOutcome, PartnerReportedStatus, RejectionReason
from pimms_contracts.v1.internal import IntakeCaseOpened


@dataclass(frozen=True, slots=True)
class Dossier:
    """What partner formats may need to know of a case; contacts only where consented."""

    case_id: str
    case_reference: str
    site_id: str
    mediator_id: str
    submitted_at: datetime  # with the offset the front office gave: partners receive it unchanged
    category: str
    urgency: str
    summary: str
    documents: tuple[str, ...]
    first_name: str
    last_name: str
    phone: str | None
    email: str | None
    consent_sms: bool
    consent_email: bool
    postal_code: str
    language: str

    @property
    def phone_for_partner(self) -> str | None:
        """The phone number, only if the visitor agreed to be contacted by SMS."""
        return self.phone if self.consent_sms else None

    @property
    def email_for_partner(self) -> str | None:
        """The e-mail address, only if the visitor agreed to be contacted by e-mail."""
        return self.email if self.consent_email else None


def dossier_from_case(event: IntakeCaseOpened) -> Dossier:
    """The dossier kept for partners from the case intake opened."""
    visitor, need = event.visitor, event.need
    return Dossier(
        case_id=str(event.case_id),
        case_reference=event.case_reference,
        site_id=event.site_id,
        mediator_id=event.mediator_id,
        submitted_at=event.submitted_at,
        category=need.category,
        urgency=need.urgency,
        summary=need.summary,
        documents=tuple(need.documents),
        first_name=visitor.first_name,
        last_name=visitor.last_name,
        phone=visitor.phone,
        email=visitor.email,
        consent_sms=visitor.contact_consent.sms,
        consent_email=visitor.contact_consent.email,
        postal_code=visitor.postal_code,
        language=visitor.language,
    )


@dataclass(frozen=True, slots=True)
class Referral:
    """One referral of a case to one partner; its id is the reference the partner sees."""

    referral_id: str
    case_id: str
    partner_id: str


class DeliveryStatus(StrEnum):
    """Where a referral stands on the gateway's side."""

    REQUESTED = "requested"  # waiting for the dossier
    SENT = "sent"  # the partner's message is in the outbox
    DELIVERED = "delivered"  # the partner's transport acknowledged it
    CANCELLED = "cancelled"
    FAILED = "failed"  # it could not be sent (no adapter, unknown partner)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The gateway's record of a referral."""

    referral_id: str
    case_id: str
    partner_id: str
    status: DeliveryStatus
    correlation_id: str
    sent_at: datetime | None
    reminders_sent: int = 0

    @property
    def reached_partner(self) -> bool:
        """True once the referral was sent: the partner may know its reference."""
        return self.sent_at is not None

    @property
    def referral(self) -> Referral:
        """The referral this delivery is about."""
        return Referral(
            referral_id=self.referral_id, case_id=self.case_id, partner_id=self.partner_id
        )


RequestDecision = Literal["send", "wait_for_dossier", "already_handled", "wait_for_documents"]
CancellationDecision = Literal["tell_partner", "withdraw_unsent", "already_cancelled"]


def decide_request(
    existing: Delivery | None, *, has_dossier: bool, lacks_documents: bool = False
) -> RequestDecision:
    """A referral is sent once: never again, even replayed, and not before its dossier is here
    with every document the partner's checklist requires (referrals released it because the
    documents came; the dossier hears of them on another topic, perhaps a little later)."""
    if existing is not None and existing.status is not DeliveryStatus.REQUESTED:
        return "already_handled"
    if not has_dossier:
        return "wait_for_dossier"
    return "wait_for_documents" if lacks_documents else "send"


def decide_cancellation(existing: Delivery | None) -> CancellationDecision:
    """The partner hears of a cancellation only if it was sent the referral."""
    if existing is not None and existing.status is DeliveryStatus.CANCELLED:
        return "already_cancelled"
    if existing is not None and existing.reached_partner:
        return "tell_partner"
    return "withdraw_unsent"


FollowUpDecision = Literal["send", "not_sent", "no_longer_open", "already_sent"]


def decide_follow_up(
    delivery: Delivery | None, *, partner_id: str, reminder: int = 0
) -> FollowUpDecision:
    """A reminder (or the file again with more documents) goes only to a partner that holds the
    referral, while it is open; a reminder number already sent is not sent twice."""
    if delivery is None or delivery.partner_id != partner_id or not delivery.reached_partner:
        return "not_sent"
    if delivery.status in (DeliveryStatus.CANCELLED, DeliveryStatus.FAILED):
        return "no_longer_open"
    if reminder and reminder <= delivery.reminders_sent:
        return "already_sent"
    return "send"


def with_documents(dossier: Dossier, added: tuple[str, ...]) -> Dossier:
    """The dossier with `added` documents too (in order, each once)."""
    documents = tuple(dict.fromkeys((*dossier.documents, *added)))
    return dossier if documents == dossier.documents else replace(dossier, documents=documents)


def answers_for(delivery: Delivery | None, *, partner_id: str) -> bool:
    """A partner may report only on referrals that were sent to it, and to nobody else."""
    return delivery is not None and delivery.partner_id == partner_id and delivery.reached_partner


@dataclass(frozen=True, slots=True)
class PartnerAnswer:
    """A partner's report, translated to the platform's status vocabulary."""

    reference: str
    status: PartnerReportedStatus
    reported_at: datetime
    outcome: CompletionOutcome | None = None
    reason: RejectionReason | None = None
    missing_documents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadAnswer:
    """A partner's answer as read, with the names of the fields its format does not list.

    Unknown fields are tolerated (specs/partners.md, tolerant reader): the caller logs their names,
    never their values, once per partner (`UnknownFieldNames.first_seen`).
    """

    answer: PartnerAnswer
    unknown_fields: frozenset[str] = frozenset()


class UnknownFieldNames:
    """Which unknown field names were already reported, per partner (report each one once)."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}

    def first_seen(self, *, partner_id: str, names: frozenset[str]) -> frozenset[str]:
        """The names among `names` never reported for this partner; they count as reported now."""
        seen = self._seen.setdefault(partner_id, set())
        new = frozenset(names - seen)
        seen.update(new)
        return new
