"""The plugin interface every partner format implements, and what formats share.

A partner format is pure mapping: bytes in, bytes out, no I/O. It turns a dossier and a referral
into the partner's own message, tells the partner a referral is cancelled, and translates the
partner's answers into the platform's vocabulary, refusing anything it does not understand.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal, Protocol

from pimms_servicekit.clock import paris_time
from pimms_servicekit.messages import BadMessage

from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, Referral

BadAnswerReason = Literal[
    "not_json",
    "malformed_xml",
    "forbidden_xml",
    "schema_invalid",
    "unknown_status",
    "unknown_outcome",
]


class BadPartnerMessage(BadMessage):
    """A partner's message that cannot be applied; it goes to that partner's dead letters."""

    def __init__(self, reason: BadAnswerReason, error: str) -> None:
        super().__init__(reason, error)


class CannotRender(Exception):
    """The partner's format has no way to say this referral (e.g. a category it does not take)."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error


class PartnerAdapter(Protocol):
    """One partner's format, both directions."""

    @property
    def format(self) -> str:
        """The directory's `format` value this adapter speaks."""
        ...

    def to_referral(self, dossier: Dossier, referral: Referral) -> bytes:
        """The referral in the partner's format; CannotRender if the format cannot carry it."""
        ...

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """The message telling the partner the referral is withdrawn, as of `at`."""
        ...

    def from_response(self, value: bytes | None) -> PartnerAnswer:
        """The partner's answer in platform words; BadPartnerMessage with a reason otherwise."""
        ...


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
MAX_REFERENCE = 200


def parse_partner_time(value: object, *, field: str) -> datetime:
    """An RFC 3339 time with offset, as partners must send them; BadPartnerMessage otherwise."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise BadPartnerMessage(
            "schema_invalid", f"{field} must be an RFC 3339 time with its offset"
        )
    text = value.upper()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise BadPartnerMessage("schema_invalid", f"{field} is not a valid date and time") from None


def partner_time(at: datetime) -> str:
    """A time as partners read it: Europe/Paris local time with its offset, to the second."""
    return paris_time(at).isoformat(timespec="seconds")


def quoted_word(value: str) -> str:
    """A partner's code word, quoted for an error message if it looks like one (never free text)."""
    return repr(value) if _WORD.match(value) else "(not a code word)"


def check_reference(value: object, *, field: str) -> str:
    """A referral reference: a non-empty string of bounded length."""
    if not isinstance(value, str) or not value.strip():
        raise BadPartnerMessage("schema_invalid", f"{field} must be a non-empty string")
    if len(value) > MAX_REFERENCE:
        raise BadPartnerMessage(
            "schema_invalid", f"{field} is longer than {MAX_REFERENCE} characters"
        )
    return value
