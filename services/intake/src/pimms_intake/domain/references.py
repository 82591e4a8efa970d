"""Case references a mediator can read to a visitor over the phone: `LYON8-2026-000123`."""

from __future__ import annotations

import re

MAX_LENGTH = 20
PREFIX_LENGTH = 7


def reference_prefix(site_id: str) -> str:
    """The site part: letters and digits of the site code, upper case, at most 7 characters."""
    compact = re.sub(r"[^A-Za-z0-9]", "", site_id).upper()
    return compact[:PREFIX_LENGTH] or "PIMMS"


def format_reference(prefix: str, year: int, number: int) -> str:
    """`PREFIX-YYYY-NNNNNN`; at most 20 characters up to 9,999,999 cases per prefix and year."""
    reference = f"{prefix}-{year:04d}-{number:06d}"
    if len(reference) > MAX_LENGTH:
        raise ValueError(f"reference counter for {prefix} in {year} is exhausted")
    return reference
