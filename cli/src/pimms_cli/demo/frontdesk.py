"""What a front-office tool puts on `pimms.intake.needs.v1`: CloudEvents headers and JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pimms_contracts import topics
from pimms_contracts.envelope import Envelope, Headers

DESK = "urn:pimms:site:{site}:frontdesk"
SUBMITTED = "fr.pimms.need.submitted.v1"
WITHDRAWN = "fr.pimms.need.withdrawn.v1"
DOCUMENTS_ADDED = "fr.pimms.need.documents_added.v1"


@dataclass(frozen=True)
class Message:
    """One record to produce."""

    topic: str
    key: str | None
    value: bytes
    headers: Headers = field(default_factory=list)


def envelope(*, ce_type: str, site: str, at: datetime, ce_id: str | None = None) -> Envelope:
    """The attributes a desk tool at `site` sets."""
    return Envelope(
        id=ce_id or str(uuid.uuid4()),
        source=DESK.format(site=site),
        type=ce_type,
        time=at,
    )


def need_submitted(body: Mapping[str, Any], *, at: datetime) -> Message:
    """A `need.submitted`, keyed by its submission id."""
    site = str(body.get("site_id", "lyon-8"))
    return Message(
        topics.INTAKE_NEEDS,
        key=str(body["submission_id"]),
        value=json.dumps(body, ensure_ascii=False).encode(),
        headers=envelope(ce_type=SUBMITTED, site=site, at=at).to_headers(),
    )


def garbage(value: bytes, *, ce_id: str, at: datetime) -> Message:
    """Bytes that claim to be a need, without a key."""
    headers = envelope(ce_type=SUBMITTED, site="lyon-8", at=at, ce_id=ce_id).to_headers()
    return Message(topics.INTAKE_NEEDS, key=None, value=value, headers=headers)


def withdrawn(*, submission_id: str, reason: str, site: str, at: datetime) -> Message:
    """A `need.withdrawn`."""
    body = {
        "submission_id": submission_id,
        "reason": reason,
        "withdrawn_at": at.isoformat(timespec="seconds"),
    }
    return Message(
        topics.INTAKE_NEEDS,
        key=submission_id,
        value=json.dumps(body).encode(),
        headers=envelope(ce_type=WITHDRAWN, site=site, at=at).to_headers(),
    )


def documents_added(
    *, submission_id: str, documents: tuple[str, ...], site: str, at: datetime
) -> Message:
    """A `need.documents_added`."""
    body = {
        "submission_id": submission_id,
        "documents": list(documents),
        "added_at": at.isoformat(timespec="seconds"),
    }
    return Message(
        topics.INTAKE_NEEDS,
        key=submission_id,
        value=json.dumps(body).encode(),
        headers=envelope(ce_type=DOCUMENTS_ADDED, site=site, at=at).to_headers(),
    )
