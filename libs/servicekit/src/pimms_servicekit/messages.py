"""Consumed messages, the envelope codec, and the errors that send a message to dead letters."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import uuid4

from pimms_contracts.base import Event
from pimms_contracts.envelope import (
    H_CORRELATION,
    H_ID,
    H_TYPE,
    Envelope,
    EnvelopeError,
    Headers,
    header_texts,
)
from pydantic import ValidationError

E = TypeVar("E", bound=Event)


class BadMessage(Exception):
    """A message that cannot be processed as it is: it goes to dead letters with this reason."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed Kafka record, as the pipeline sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    # Decoded once, on first use: the pipeline asks for the same headers many times a message.
    _texts: dict[str, str | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _id: str | None = field(default=None, init=False, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """A header as text (last one wins), or None when absent or not UTF-8."""
        return self.header_texts.get(name)

    @property
    def header_texts(self) -> dict[str, str | None]:
        """Every header as text (last one wins; None when not UTF-8), decoded once."""
        texts = self._texts
        if texts is None:
            texts = header_texts(self.headers)
            object.__setattr__(self, "_texts", texts)
        return texts

    @property
    def message_id(self) -> str:
        """The CloudEvents id; for senders without CloudEvents headers (partners), the record's
        position and a digest of its content: a redelivery has the same id, while a new message at
        a position seen before (a topic recreated, the memory-only broker restarted) does not."""
        if self._id is not None:
            return self._id
        ce_id = self.header(H_ID)
        if not ce_id:
            content = (self.key or b"") + b"\x00" + (self.value or b"")
            digest = hashlib.sha256(content).hexdigest()[:16]
            ce_id = f"{self.topic}:{self.partition}:{self.offset}:{digest}"
        object.__setattr__(self, "_id", ce_id)
        return ce_id

    @property
    def event_type(self) -> str | None:
        """The `ce_type` header."""
        return self.header(H_TYPE)

    @property
    def correlation_id(self) -> str | None:
        """The `ce_correlationid` header."""
        return self.header(H_CORRELATION)

    @property
    def key_text(self) -> str | None:
        """The key as text."""
        return self.key.decode(errors="replace") if self.key is not None else None

    @property
    def position(self) -> str:
        """topic/partition@offset, for logs."""
        return f"{self.topic}/{self.partition}@{self.offset}"

    @classmethod
    def from_record(cls, record: Any) -> Incoming:
        """From an aiokafka ConsumerRecord."""
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple([(name, value or b"") for name, value in (record.headers or ())]),
            timestamp_ms=record.timestamp or 0,
        )


def new_id() -> str:
    """A new unique id for a message."""
    return str(uuid4())


def encode_data(event: Event) -> bytes:
    """The JSON value of an event (CloudEvents binary mode: the value is the data alone)."""
    return event.model_dump_json().encode()


def encode(event: Event, *, envelope: Envelope) -> tuple[bytes, Headers]:
    """Value and headers of an event."""
    if envelope.type != event.ce_type:
        raise ValueError(f"envelope type {envelope.type} does not match {event.ce_type}")
    return encode_data(event), envelope.to_headers()


def parse_json(value: bytes | None) -> Any:
    """The JSON document in a value, or BadMessage(not_json)."""
    if value is None:
        raise BadMessage("not_json", "the message has no value")
    try:
        return json.loads(value)
    except UnicodeDecodeError:
        raise BadMessage("not_json", "the value is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadMessage(
            "not_json", f"the value is not JSON ({exc.msg} at line {exc.lineno})"
        ) from None


def read_envelope(incoming: Incoming) -> Envelope:
    """The CloudEvents attributes of a message, or BadMessage(missing_envelope)."""
    try:
        return Envelope.from_texts(incoming.header_texts)
    except EnvelopeError as exc:
        raise BadMessage("missing_envelope", str(exc)) from None


def decode(incoming: Incoming, registry: dict[str, type[Event]]) -> tuple[Envelope, Event]:
    """Envelope and event of a platform message; BadMessage names what is wrong."""
    envelope = read_envelope(incoming)
    model = registry.get(envelope.type)
    if model is None:
        raise BadMessage("unknown_type", f"ce_type {envelope.type!r} is not expected here")
    if incoming.value is None:
        parse_json(None)  # BadMessage(not_json)
    try:
        return envelope, model.model_validate_json(incoming.value or b"")
    except ValidationError as exc:
        parse_json(incoming.value)  # not JSON at all says so (parsed only for a bad message)
        raise BadMessage("schema_invalid", describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError, *, limit: int = 5) -> str:
    """Which fields are wrong and why, without echoing the values (they may be personal)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:limit]:
        location = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{location}: {error['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def b64(data: bytes | None) -> str | None:
    """Bytes as base64 text (to carry exact bytes inside JSON)."""
    return base64.b64encode(data).decode() if data is not None else None


def unb64(text: str | None) -> bytes | None:
    """The inverse of b64."""
    return base64.b64decode(text) if text is not None else None


def headers_to_json(headers: Headers | tuple[tuple[str, bytes], ...]) -> list[list[str]]:
    """Headers as JSON-storable entries that keep the exact bytes: `[name, text, "t"]` for UTF-8
    text a database stores as is (our own headers: no base64 on the hot path), `[name, base64]`
    for anything else (a producer's odd bytes, a NUL PostgreSQL refuses)."""
    stored: list[list[str]] = []
    for name, value in headers:
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            stored.append([name, base64.b64encode(value).decode()])
        else:
            stored.append([name, text, "t"])
    return stored


def headers_from_json(data: list[list[str]]) -> Headers:
    """The inverse of headers_to_json (rows written before text entries are base64 pairs)."""
    return [
        (entry[0], entry[1].encode() if len(entry) == 3 else base64.b64decode(entry[1]))
        for entry in data
    ]


def format_dt(value: datetime) -> str:
    """RFC 3339 with offset."""
    return value.isoformat()
