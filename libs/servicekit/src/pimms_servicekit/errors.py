"""Which failures are worth retrying (the database or a network is down) and which are not."""

from __future__ import annotations

import asyncio
import errno

from sqlalchemy import exc as sa

_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57P", "58")
_CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)
_TRANSIENT_SQLITE_WORDS = ("locked", "busy", "unable to open", "disk i/o")


class ShuttingDown(RuntimeError):
    """The service is stopping: leave the message uncommitted so it is delivered again."""


def is_transient(error: BaseException) -> bool:
    """True for a failure that should pass if we wait: retry, do not dead-letter."""
    if isinstance(error, ShuttingDown):
        return True
    if isinstance(error, sa.DBAPIError):
        if error.connection_invalidated:
            return True
        state = _sqlstate(error)
        if state is not None:
            return state.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
        if isinstance(error, sa.OperationalError):
            text = str(error.orig).lower()
            is_sqlite = "sqlite" in type(error.orig).__module__.lower()
            return not is_sqlite or any(word in text for word in _TRANSIENT_SQLITE_WORDS)
        return isinstance(error, sa.InterfaceError)
    if isinstance(error, sa.TimeoutError | sa.DisconnectionError):
        return True
    # Connection failures, not every OSError: a full disk or a permission error will not pass.
    return isinstance(error, ConnectionError | TimeoutError | asyncio.TimeoutError) or (
        isinstance(error, OSError) and error.errno in _CONNECTION_ERRNOS
    )


def _sqlstate(error: sa.DBAPIError) -> str | None:
    orig = error.orig
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(orig, attribute, None)
        if isinstance(value, str) and value:
            return value
    cause = getattr(orig, "__cause__", None)
    value = getattr(cause, "sqlstate", None)
    return value if isinstance(value, str) and value else None
