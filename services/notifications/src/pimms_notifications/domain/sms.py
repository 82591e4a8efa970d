"""SMS length: which encoding a text needs and how many segments (billed SMS) it takes.

GSM 03.38: a text made only of the GSM-7 basic table (and its extension table, two septets
per character) goes 160 septets in one SMS, 153 per segment when it is split. Anything else
(Arabic, emoji, `ê`, `ç`) goes UCS-2: 70 UTF-16 units in one SMS, 67 per segment. A segment
never splits an escape pair or a surrogate pair, so the count packs greedily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SmsEncoding = Literal["gsm7", "ucs2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE = {"gsm7": 160, "ucs2": 70}
PER_SEGMENT = {"gsm7": 153, "ucs2": 67}

# French letters and typography outside GSM-7, and their nearest GSM-7 spelling: a French SMS
# that differs only by these stays in GSM-7 (160 characters) instead of UCS-2 (70).
GSM7_FOLDS: dict[str, str] = {
    "â": "a",
    "ê": "e",
    "ë": "e",
    "î": "i",
    "ï": "i",
    "ô": "o",
    "û": "u",
    "ÿ": "y",
    "ç": "c",
    "À": "A",
    "Â": "A",
    "È": "E",
    "Ê": "E",
    "Ë": "E",
    "Î": "I",
    "Ï": "I",
    "Ô": "O",
    "Ù": "U",
    "Û": "U",
    "œ": "oe",
    "Œ": "OE",
    "\u2019": "'",
    "\u2018": "'",
    "«": '"',
    "»": '"',
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u202f": " ",
}


@dataclass(frozen=True)
class SmsLength:
    """How a text goes out: its encoding, its length in units, and its segments."""

    encoding: SmsEncoding
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    """Whether every character is in the GSM-7 basic or extension table."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def sms_encoding(text: str) -> SmsEncoding:
    """GSM-7 when every character allows it, else UCS-2."""
    return "gsm7" if is_gsm7(text) else "ucs2"


def sms_text(text: str) -> str:
    """The text as sent: trimmed, and folded to GSM-7 when only French accents stood in the way."""
    trimmed = text.strip()
    folded = "".join(GSM7_FOLDS.get(char, char) for char in trimmed)
    return folded if is_gsm7(folded) else trimmed


def _unit_sizes(text: str, encoding: SmsEncoding) -> list[int]:
    if encoding == "gsm7":
        return [2 if char in GSM7_EXTENSION else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def sms_length(text: str) -> SmsLength:
    """Encoding, units (septets or UTF-16 units) and segment count of `text` as given."""
    encoding = sms_encoding(text)
    sizes = _unit_sizes(text, encoding)
    units = sum(sizes)
    if units <= SINGLE[encoding]:
        return SmsLength(encoding=encoding, units=units, segments=1 if units else 0)
    capacity = PER_SEGMENT[encoding]
    segments, used = 1, 0
    for size in sizes:
        if used + size > capacity:
            segments, used = segments + 1, 0
        used += size
    return SmsLength(encoding=encoding, units=units, segments=segments)
