"""The embedded default channels: one readable file per message under the data directory.

Files are written to a temporary name and renamed, so a reader never sees half a message, and
named by notification id, so a redelivered message rewrites the same file instead of adding one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

from pimms_notifications.channels import OutgoingMessage


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (not possible on every platform: best effort)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def safe_segment(value: str) -> str:
    """A value usable as one folder name: no separator, no `..`, nothing hidden."""
    quoted = quote(value, safe="-_@+")
    return "%2E" + quoted[1:] if quoted.startswith(".") else quoted


class FileSmsChannel:
    """SMS as text files: `To: <phone>`, a blank line, the text."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, message: OutgoingMessage) -> Path:
        """Where this message's file goes."""
        return self.root / f"{message.notification_id}.txt"

    async def send(self, message: OutgoingMessage) -> None:
        """Write the SMS file."""
        text = f"To: {message.to}\n\n{message.body}"
        write_atomically(self.path_for(message), text.encode("utf-8"))


class FileEmailChannel:
    """E-mails as RFC 5322 `.eml` files (UTF-8), ready for a mail client or a relay."""

    def __init__(self, root: Path, *, sender: str) -> None:
        self.root = root
        self.sender = sender

    def path_for(self, message: OutgoingMessage) -> Path:
        """Where this message's file goes."""
        return self.root / f"{message.notification_id}.eml"

    def to_email(self, message: OutgoingMessage) -> EmailMessage:
        """The message as an e-mail."""
        email = EmailMessage(policy=policy.SMTP)
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject or ""
        email["Date"] = format_datetime(message.sent_at)
        domain = self.sender.rpartition("@")[2].strip("> ") or "pimms.invalid"
        email["Message-ID"] = f"<{message.notification_id}@{domain}>"
        email["Auto-Submitted"] = "auto-generated"
        email.set_content(message.body, charset="utf-8", cte="8bit")  # readable as a file
        email["Content-Language"] = message.language  # after set_content, which clears Content-*
        return email

    async def send(self, message: OutgoingMessage) -> None:
        """Write the e-mail file."""
        write_atomically(self.path_for(message), self.to_email(message).as_bytes())


class FileMediatorInbox:
    """A folder per mediator: `<site_id>/<mediator_id>/<notification_id>.txt`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, message: OutgoingMessage) -> Path:
        """Where this message's file goes."""
        return (
            self.root
            / safe_segment(message.site_id)
            / safe_segment(message.to)
            / f"{message.notification_id}.txt"
        )

    async def send(self, message: OutgoingMessage) -> None:
        """Write the inbox file."""
        text = (
            f"To: {message.to} ({message.site_id})\n"
            f"Subject: {message.subject or ''}\n"
            f"Date: {message.sent_at.isoformat(timespec='seconds')}\n\n"
            f"{message.body}"
        )
        write_atomically(self.path_for(message), text.encode("utf-8"))
