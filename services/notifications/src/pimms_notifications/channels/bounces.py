"""E-mail bounces through a bounce mailbox folder (`PIMMS_NOTIFICATIONS_MAIL_BOUNCE_DIR`).

The mail system delivers bounces (RFC 3464 delivery status notifications, or the cruder kind)
for our From address as `.eml` files into a folder. `parse_bounce` finds the notification a
bounce is about by our `Message-ID` (`<notification-id@our-domain>`) in the returned message;
`scan_bounce_folder` reads the folder, and `archive_bounce` moves a handled file aside, once the
notification is marked failed (after the commit, so a crash re-reads it: harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from uuid import UUID

UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
HANDLED_FOLDER = "handled"


@dataclass(frozen=True)
class EmailBounce:
    """An e-mail of ours came back: which notification, and the status the server gave."""

    notification_id: UUID
    status: str | None
    """The DSN status (`5.1.1`), when the bounce has one."""
    reason: str = "email_bounced"


@dataclass(frozen=True)
class ScannedBounce:
    """One file of the bounce folder and what it says (None: not about one of our e-mails)."""

    path: Path
    bounce: EmailBounce | None


def _our_id(text: str, *, mail_domain: str) -> UUID | None:
    pattern = rf"<({UUID_PATTERN})@{re.escape(mail_domain)}>"
    match = re.search(pattern, text, flags=re.IGNORECASE)
    return UUID(match.group(1)) if match else None


def _status_fields(report: Message) -> list[Message]:
    """The per-message and per-recipient field blocks of every delivery-status part."""
    blocks: list[Message] = []
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                blocks += [block for block in payload if isinstance(block, Message)]
    return blocks


def _returned_text(report: Message) -> str:
    """The returned message's headers (or the whole text of a bounce without structure)."""
    texts: list[str] = []
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                texts += [f"{name}: {value}" for name, value in inner.items()]
        elif kind in {"text/rfc822-headers", "text/plain"}:
            content = part.get_payload(decode=True)
            if isinstance(content, bytes):
                texts.append(content.decode("utf-8", errors="replace"))
    return "\n".join(texts)


def parse_bounce(raw: bytes, *, mail_domain: str) -> EmailBounce | None:
    """The bounce one `.eml` file reports, or None (not ours, or only a delay warning)."""
    report = message_from_bytes(raw, policy=policy.compat32)
    # The bounce's own headers are skipped: its Message-ID is the reporting server's.
    notification_id = _our_id(_returned_text(report), mail_domain=mail_domain)
    if notification_id is None:
        for header in ("In-Reply-To", "References"):
            notification_id = _our_id(str(report.get(header, "")), mail_domain=mail_domain)
            if notification_id is not None:
                break
    if notification_id is None:
        return None
    blocks = _status_fields(report)
    actions = {str(block.get("Action", "")).strip().lower() for block in blocks} - {""}
    if actions and "failed" not in actions:
        return None  # "delayed", "relayed", "delivered": not a failure
    statuses = [str(block["Status"]).strip() for block in blocks if block.get("Status")]
    failed = [status for status in statuses if status.startswith("5")]
    chosen = failed or statuses
    return EmailBounce(notification_id=notification_id, status=chosen[0] if chosen else None)


def _scan(folder: Path, mail_domain: str) -> list[ScannedBounce]:
    if not folder.is_dir():
        return []
    found: list[ScannedBounce] = []
    for path in sorted(folder.glob("*.eml")):
        with contextlib.suppress(FileNotFoundError):  # another instance archived it
            raw = path.read_bytes()
            found.append(ScannedBounce(path, parse_bounce(raw, mail_domain=mail_domain)))
    return found


async def scan_bounce_folder(folder: Path, *, mail_domain: str) -> list[ScannedBounce]:
    """Every `.eml` file in `folder` with the bounce it reports (off the event loop)."""
    return await asyncio.to_thread(_scan, folder, mail_domain)


def _archive(path: Path) -> None:
    target = path.parent / HANDLED_FOLDER
    target.mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.replace(target / path.name)


async def archive_bounce(path: Path) -> None:
    """Move a handled bounce file into `handled/`, so the next scan skips it."""
    await asyncio.to_thread(_archive, path)
