"""The plugin interface every partner format implements, and what formats share.

A partner format is pure mapping: bytes in, bytes out, no I/O. It turns a dossier and a referral
into the partner's own message (again, as a reminder), tells the partner a referral is cancelled,
and translates the partner's answers into the platform's vocabulary, refusing anything it does not
understand and tolerating fields it does not know (their names are returned, never their values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Literal, Protocol

from pimms_servicekit.clock import paris_time
from pimms_servicekit.messages import BadMessage, parse_json
from pydantic import ValidationError

from pimms_partner_gateways.domain.model import Dossier, PartnerAnswer, ReadAnswer, Referral

BadAnswerReason = Literal[
    "not_json",
    "malformed_xml",
    "forbidden_xml",
    "schema_invalid",
    "unknown_status",
    "unknown_outcome",
    "unknown_document",
]
UNREADABLE_NAME = "(not a code word)"


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

    def to_reminder(self, dossier: Dossier, referral: Referral, *, number: int) -> bytes:
        """The referral again, marked as the partner's reminder `number` (1, 2, ...)."""
        ...

    def to_cancellation(self, referral: Referral, at: datetime) -> bytes:
        """The message telling the partner the referral is withdrawn, as of `at`."""
        ...

    def read_response(self, value: bytes | None) -> ReadAnswer:
        """The answer and the names of unknown fields; BadPartnerMessage with a reason otherwise."""
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


def check_reminder_number(number: int) -> int:
    """Reminders are counted from 1."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError("a reminder number is a positive integer")
    return number


def safe_names(names: Iterable[object]) -> frozenset[str]:
    """Field names fit for a log line: a name that is not a code word is never echoed."""
    return frozenset(
        name if isinstance(name, str) and _WORD.match(name) else UNREADABLE_NAME for name in names
    )


def describe_errors(exc: ValidationError) -> str:
    """What is wrong with each field of a partner's message, never echoing what it holds."""
    parts: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "the message"
        kind = error["type"]
        if kind == "missing":
            text = f"{field} is missing"
        elif kind == "string_too_short":
            text = f"{field} must be a non-empty string"
        elif kind == "string_too_long":
            limit = (error.get("ctx") or {}).get("max_length", MAX_REFERENCE)
            text = f"{field} is longer than {limit} characters"
        elif kind == "string_type":
            text = f"{field} must be a string"
        elif kind in ("list_type", "tuple_type"):
            text = f"{field} must be a list"
        elif kind == "bool_type":
            text = f"{field} must be true or false"
        elif kind == "int_type":
            text = f"{field} must be an integer"
        else:
            text = f"{field}: {error['msg']}"
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


def read_json_object(value: bytes | None) -> dict[str, object]:
    """A partner's JSON message, which must be an object; BadPartnerMessage otherwise."""
    try:
        data = parse_json(value)
    except BadMessage as bad:
        raise BadPartnerMessage("not_json", bad.error) from None
    except RecursionError:
        raise BadPartnerMessage("not_json", "the value is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadPartnerMessage("schema_invalid", "the message must be a JSON object")
    return data


def json_document(fields: dict[str, object], *, extra: dict[str, object] | None = None) -> bytes:
    """One top-level field per line, nested values on one line: the layout of the specifications."""
    lines = [
        f"  {json.dumps(name)}: {json.dumps(value, ensure_ascii=False)}"
        for name, value in {**fields, **(extra or {})}.items()
    ]
    return ("{\n" + ",\n".join(lines) + "\n}").encode()


def json_line(fields: dict[str, object]) -> bytes:
    """A small message on one line (cancellations)."""
    return json.dumps(fields, ensure_ascii=False).encode()
