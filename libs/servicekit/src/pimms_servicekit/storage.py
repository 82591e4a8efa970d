"""Making what a producer sent storable: every database refuses some bytes (PostgreSQL: NUL).

Ids and labels taken from a message (a `ce_id`, a key, an event type) are written to inbox, parking
and outbox rows. A hostile or buggy producer must not be able to make that write fail: text is
cleaned, and an id that cannot be kept as it is gets replaced by a digest of itself (stable, so a
redelivery of the same message is still recognised).
"""

from __future__ import annotations

import hashlib
import re

# NUL is refused by PostgreSQL text columns; other C0 controls and lone surrogates make trouble
# in logs and drivers. Tab, newline and carriage return are ordinary text.
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def storable_text(value: str | None, *, limit: int) -> str | None:
    """`value` without unstorable characters, cut to `limit` characters."""
    if value is None:
        return None
    return _UNSTORABLE.sub("\ufffd", value)[:limit]


def storable_id(value: str, *, limit: int = 300) -> str:
    """An id as it is when storable, else a stable digest of it (`sha256:<hex>`)."""
    if len(value) <= limit and not _UNSTORABLE.search(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def storable_header(value: bytes) -> bytes:
    """A header value that any store and any UTF-8 reader accepts (for dead-letter headers)."""
    text = value.decode("utf-8", "replace")
    return (storable_text(text, limit=4000) or "").encode()
