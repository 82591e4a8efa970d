"""What intake decides about a submission, and what it shares downstream."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pimms_contracts.v1.frontoffice import NeedSubmitted
from pimms_contracts.v1.internal import SharedNeed, SharedVisitor

SUPPORTED_LANGUAGES = ("fr", "en", "ar")


class CaseStatus(StrEnum):
    """Where a case stands, as intake sees it."""

    OPEN = "open"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"


@dataclass(frozen=True)
class CaseSnapshot:
    """What intake needs to know of an existing case to answer a tool."""

    case_id: str
    case_reference: str
    submission_id: str
    fingerprint: str
    accepted_at: datetime
    correlation_id: str
    status: CaseStatus
    documents: tuple[str, ...]


SubmissionDecision = Literal["open", "repeat", "conflict"]


def fingerprint(need: NeedSubmitted) -> str:
    """A digest of the submission's content, defaults applied: equal content, equal digest."""
    canonical = json.dumps(need.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def decide_submission(existing: CaseSnapshot | None, digest: str) -> SubmissionDecision:
    """A new submission opens a case; a repeat gets the same answer; other content is a conflict."""
    if existing is None:
        return "open"
    return "repeat" if existing.fingerprint == digest else "conflict"


def normalize_language(tag: str) -> str:
    """The primary language subtag, lower case (`fr-FR` -> `fr`)."""
    return re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()


def shared_visitor(need: NeedSubmitted) -> SharedVisitor:
    """The visitor as partners and notifications may see them: contacts only where consented."""
    visitor = need.visitor
    consent = visitor.contact_consent
    return SharedVisitor(
        first_name=visitor.first_name,
        last_name=visitor.last_name,
        phone=visitor.phone if consent.sms else None,
        email=visitor.email if consent.email else None,
        postal_code=visitor.postal_code,
        language=normalize_language(visitor.preferred_language),
        contact_consent=consent,
    )


def shared_need(need: NeedSubmitted) -> SharedNeed:
    """The need as downstream services see it."""
    return SharedNeed(
        category=need.need.category,
        summary=need.need.summary,
        urgency=need.need.urgency,
        documents=need.need.documents,
    )


def merge_documents(held: tuple[str, ...], added: tuple[str, ...]) -> tuple[str, ...]:
    """Documents held after adding some, in the order they were first brought, without repeats."""
    merged = list(held)
    for code in added:
        if code not in merged:
            merged.append(code)
    return tuple(merged)
