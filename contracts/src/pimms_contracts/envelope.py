"""CloudEvents 1.0 in Kafka binary mode: the value is the data, the attributes are headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import AwareDatetime, Field, ValidationError

from pimms_contracts.base import FrozenModel

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_SOURCE = "ce_source"
H_TYPE = "ce_type"
H_TIME = "ce_time"
H_CORRELATION = "ce_correlationid"
H_CAUSATION = "ce_causationid"
H_CONTENT_TYPE = "content-type"

Headers = list[tuple[str, bytes]]


class EnvelopeError(ValueError):
    """Headers that do not make a CloudEvents envelope."""


class Envelope(FrozenModel):
    """The CloudEvents attributes of one message."""

    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    time: AwareDatetime
    correlation_id: str | None = Field(default=None, max_length=200)
    causation_id: str | None = Field(default=None, max_length=200)
    specversion: str = SPECVERSION
    content_type: str = CONTENT_TYPE

    def to_headers(self) -> Headers:
        """Kafka headers, in the binary-mode names of specs/front-office.md."""
        headers: Headers = [
            (H_SPECVERSION, self.specversion.encode()),
            (H_ID, self.id.encode()),
            (H_SOURCE, self.source.encode()),
            (H_TYPE, self.type.encode()),
            (H_TIME, format_time(self.time).encode()),
            (H_CONTENT_TYPE, self.content_type.encode()),
        ]
        if self.correlation_id:
            headers.append((H_CORRELATION, self.correlation_id.encode()))
        if self.causation_id:
            headers.append((H_CAUSATION, self.causation_id.encode()))
        return headers

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> Envelope:
        """Read the attributes back; raise EnvelopeError naming what is missing or wrong."""
        return cls.from_texts(header_texts(headers))

    @classmethod
    def from_texts(cls, found: Mapping[str, str | None]) -> Envelope:
        """The same from headers already decoded (None: a header that is not UTF-8; the last
        of repeated headers wins)."""
        for name, text in found.items():
            if text is None:
                raise EnvelopeError(f"header {name} is not UTF-8")
        missing = [h for h in (H_ID, H_SOURCE, H_TYPE, H_TIME) if not found.get(h)]
        if missing:
            raise EnvelopeError(f"missing CloudEvents header(s): {', '.join(missing)}")
        try:
            return cls.model_validate(
                {
                    "id": found[H_ID],
                    "source": found[H_SOURCE],
                    "type": found[H_TYPE],
                    "time": found[H_TIME],
                    "correlation_id": found.get(H_CORRELATION) or None,
                    "causation_id": found.get(H_CAUSATION) or None,
                    "specversion": found.get(H_SPECVERSION, SPECVERSION),
                    "content_type": found.get(H_CONTENT_TYPE, CONTENT_TYPE),
                },
                strict=False,
            )
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
            raise EnvelopeError(f"invalid CloudEvents attribute(s): {fields}") from None


def header_texts(headers: Iterable[tuple[str, bytes]]) -> dict[str, str | None]:
    """Headers as text: the last of repeated ones wins, None for one that is not UTF-8."""
    texts: dict[str, str | None] = {}
    for name, value in headers:
        try:
            texts[name] = value.decode()
        except UnicodeDecodeError:
            texts[name] = None
    return texts


def format_time(value: datetime) -> str:
    """RFC 3339 with offset and milliseconds."""
    return value.isoformat(timespec="milliseconds")
