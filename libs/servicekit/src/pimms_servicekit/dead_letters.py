"""The dead-letter record: the original key, value and headers, plus the `pimms_dlt_*` headers.

Header names come from `pimms_contracts.topics` (support tools read them). Everything added is
made storable and readable: a dead letter must never fail because of what it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pimms_contracts import topics

from pimms_servicekit.storage import storable_header


@dataclass(frozen=True, slots=True)
class Original:
    """Where a message was read, and its exact bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What goes to `<topic>.dlt`."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def dead_letter(
    original: Original, *, reason: str, error: str, service: str, failed_at: datetime
) -> DeadLetter:
    """The dead letter of `original`, with the reason and where it came from."""
    added = (
        (topics.DLT_REASON, reason),
        (topics.DLT_ERROR, error),
        (topics.DLT_SERVICE, service),
        (topics.DLT_ORIGINAL_TOPIC, original.topic),
        (topics.DLT_ORIGINAL_PARTITION, str(original.partition)),
        (topics.DLT_ORIGINAL_OFFSET, str(original.offset)),
        (topics.DLT_FAILED_AT, failed_at.isoformat(timespec="milliseconds")),
    )
    # A message dead-lettered twice (replayed, failed again) keeps one set of pimms_dlt_* headers.
    kept = tuple((n, v) for n, v in original.headers if n not in topics.DLT_HEADERS)
    return DeadLetter(
        topic=topics.dead_letters(original.topic),
        key=original.key,
        value=original.value,
        headers=(
            *((n, storable_header(v)) for n, v in kept),
            *((n, storable_header(v.encode())) for n, v in added),
        ),
    )
