"""Logs are structlog JSON events, bound to case_id and correlation_id, with personal data removed.

Personal data never reaches a log line: known keys are replaced, and e-mail addresses, phone
numbers and validation inputs are masked in every string, exception texts included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"

PERSONAL_KEYS = frozenset(
    {
        "first_name",
        "last_name",
        "name",
        "phone",
        "email",
        "postal_code",
        "address",
        "summary",
        "description",
        "comment",
        "visitor",
        "need",
        "customer",
        # partner formats, in their own words
        "nom",
        "prenom",
        "telephone",
        "codepostal",
        "code_postal",
        "client",
        "usager",
        "demandeur",
        "commentaire",
        "objet",
        # raw message content
        "body",
        "value",
        "payload",
        "raw",
    }
)

# Values our own code produces (ids, codes, positions): nothing personal can be in them.
SAFE_KEYS = frozenset(
    {
        "level",
        "ts",
        "service",
        "logger",
        "case_id",
        "correlation_id",
        "event_id",
        "event_type",
        "kafka",
        "topic",
        "case_reference",
        "submission_id",
        "site_id",
        "category",
        "partner_id",
        "referral_id",
        "status",
        "outcome",
        "reason",
        "dlt_topic",
        "notification_id",
        "channel",
        "audience",
        "template",
        "language",
    }
)

_EMAIL = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+\.[A-Za-z]{2,}")
# Not right after "HH:MM:" (the seconds and fraction of a clock time, 09:30:08.123456).
_PHONE = re.compile(r"(?<![\w-])(?<!\d:)\+?\d[\d .-]{7,17}\d(?![\w-])")
_DECIMAL = re.compile(r"\d+\.\d+")
_PYDANTIC_INPUT = re.compile(r"input_value=(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\{.*?\}|\S+)")
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(?:\(|$))", re.DOTALL)


def scrub_text(text: str) -> str:
    """Mask e-mail addresses, phone numbers and echoed inputs inside free text."""
    text = _PYDANTIC_INPUT.sub(f"input_value={REDACTED}", text)
    text = _SQL_PARAMETERS.sub(f"[parameters: {REDACTED}]", text)
    text = _EMAIL.sub(REDACTED, text)
    return _PHONE.sub(_mask_phone, text)


def _mask_phone(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = re.sub(r"\D", "", found)
    # Long digit runs that are not phone-shaped (ids, offsets, timestamps) are left alone, and
    # so are plain decimals (0.12345678 s): a phone number is not written with one decimal point.
    looks_like_phone = (
        found.startswith(("+", "0"))
        and 8 <= len(digits) <= 15
        and _DECIMAL.fullmatch(found) is None
    )
    return REDACTED if looks_like_phone else match.group(0)


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of `value` with personal data removed, recursively."""
    if key is not None and key.lower() in PERSONAL_KEYS:
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    return value


def redaction_processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last line of defence before a log line is written."""
    return {k: v if _safe(k, v) else redact(v, k) for k, v in event_dict.items()}


_EVENT_NAME = re.compile(r"[a-z0-9_.]{1,80}")


def _safe(key: str, value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 200:
        return False
    if key == "event":  # our events are names; a library's message is free text
        return _EVENT_NAME.fullmatch(value) is not None
    return key in SAFE_KEYS


def _add_service(service: str) -> Processor:
    def add(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add


def _drop_empty(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return {k: v for k, v in event_dict.items() if v is not None}


def _rename_stdlib_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    return event_dict


_configured = {"level": logging.INFO}


def enabled(level: str) -> bool:
    """Whether lines at `level` are written (to skip building a line nobody will read)."""
    return bool(logging.getLevelName(level.upper()) >= _configured["level"])


def configure_logging(*, service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines on `stream` (stdout by default) for structlog and the standard library alike."""
    _configured["level"] = logging.getLevelName(level.upper())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        _add_service(service),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, _drop_empty, redaction_processor, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                _rename_stdlib_fields,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _drop_empty,
                redaction_processor,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries speak at WARNING: their per-message chatter is not what support staff read.
    for noisy in ("aiokafka", "faststream", "sqlalchemy", "alembic", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)


def bound_context(**values: Any) -> Any:
    """Bind values (case_id, correlation_id, event_id, ...) to every log line inside the block."""
    clean = {k: v for k, v in values.items() if v is not None}
    return structlog.contextvars.bound_contextvars(**clean)


def current_context() -> MutableMapping[str, Any]:
    """What is bound right now."""
    return structlog.contextvars.get_contextvars()
