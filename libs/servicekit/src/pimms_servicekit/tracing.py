"""W3C trace context across Kafka: every platform event carries a `traceparent` header,
continuing the trace of the message that caused it, from the front office through every service
(partner feeds carry the partner's payload alone, as specs/partners.md requires). The trace id of a
case journey with no incoming trace is its correlation id, so support staff find the same journey
under either name. Exporting spans (OTLP) is a deployment's choice; the headers are always there.
"""

from __future__ import annotations

import re
import secrets

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a valid `traceparent` value, else None."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def trace_id_for(*, incoming: str | None, correlation_id: str | None) -> str:
    """The trace to continue: the incoming one, else one derived from the correlation id."""
    found = trace_id_of(incoming)
    if found:
        return found
    hexed = (correlation_id or "").replace("-", "").lower()
    if re.fullmatch(r"[0-9a-f]{32}", hexed) and hexed != "0" * 32:
        return hexed
    return secrets.token_hex(16)


def child_traceparent(trace_id: str) -> str:
    """A `traceparent` for a new span of `trace_id` (sampled)."""
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"
