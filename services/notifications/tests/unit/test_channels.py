"""The embedded channels: one readable file per message, rewritten (never added) on a retry."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from pimms_notifications.channels import OutgoingMessage
from pimms_notifications.channels.files import (
    FileEmailChannel,
    FileMediatorInbox,
    FileSmsChannel,
    safe_segment,
)

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def message(**changes: object) -> OutgoingMessage:
    base: dict[str, object] = {
        "notification_id": uuid.UUID("00000000-0000-5000-8000-000000000001"),
        "to": "+33612345678",
        "site_id": "lyon-8",
        "subject": "Dossier LYON8-2026-000123 : votre demande est prise en charge",
        "body": "Bonjour Marie,\n\nÉDF a pris en charge votre demande.\n",
        "sent_at": AT,
        "language": "fr",
    }
    return OutgoingMessage(**{**base, **changes})  # type: ignore[arg-type]


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


async def test_an_sms_is_a_text_file_addressed_to_the_phone(tmp_path: Path) -> None:
    channel = FileSmsChannel(tmp_path / "sms")
    await channel.send(message(subject=None, body="PIMMS : Bonjour Marie.\n"))
    [written] = files_in(tmp_path)
    assert written.name == "00000000-0000-5000-8000-000000000001.txt"
    assert written.read_text(encoding="utf-8") == "To: +33612345678\n\nPIMMS : Bonjour Marie.\n"


async def test_sending_the_same_notification_again_rewrites_the_same_file(tmp_path: Path) -> None:
    channel = FileSmsChannel(tmp_path)
    await channel.send(message(body="first\n"))
    await channel.send(message(body="second\n"))
    [written] = files_in(tmp_path)  # no temporary file left either
    assert written.read_text(encoding="utf-8").endswith("second\n")


async def test_an_email_is_a_proper_utf8_message(tmp_path: Path) -> None:
    channel = FileEmailChannel(tmp_path, sender="PIMMS <notifications@pimms.example>")
    await channel.send(message(to="marie.dupont@example.org", language="ar"))
    [written] = files_in(tmp_path)
    assert written.suffix == ".eml"
    raw = written.read_bytes()
    assert b"\r\n" in raw  # RFC 5322 line ends
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["To"] == "marie.dupont@example.org"
    assert parsed["From"] == "PIMMS <notifications@pimms.example>"
    assert parsed["Subject"] == "Dossier LYON8-2026-000123 : votre demande est prise en charge"
    assert parsed["Message-ID"] == "<00000000-0000-5000-8000-000000000001@pimms.example>"
    assert parsed["Content-Language"] == "ar"
    assert parsed["Date"]
    body = parsed.get_body()
    assert body is not None
    assert body.get_content_charset() == "utf-8"
    assert (
        body.get_content().replace("\r\n", "\n")
        == "Bonjour Marie,\n\nÉDF a pris en charge votre demande.\n"
    )


async def test_the_mediator_inbox_is_a_folder_per_site_and_mediator(tmp_path: Path) -> None:
    inbox = FileMediatorInbox(tmp_path)
    await inbox.send(message(to="m-042"))
    [written] = files_in(tmp_path)
    assert written.relative_to(tmp_path).parts == (
        "lyon-8",
        "m-042",
        "00000000-0000-5000-8000-000000000001.txt",
    )
    text = written.read_text(encoding="utf-8")
    assert text.startswith("To: m-042 (lyon-8)\nSubject: Dossier LYON8-2026-000123")


@pytest.mark.parametrize(
    ("mediator_id", "segment"),
    [
        ("m-042", "m-042"),
        ("../etc", "%2E.%2Fetc"),
        ("a/b", "a%2Fb"),
        ("..", "%2E."),
        ("é", "%C3%A9"),
    ],
)
def test_a_mediator_id_never_leaves_its_folder(mediator_id: str, segment: str) -> None:
    assert safe_segment(mediator_id) == segment


async def test_a_channel_that_cannot_write_raises_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "sms"
    blocker.write_text("a file where the folder should be", encoding="utf-8")
    with pytest.raises(FileExistsError):
        await FileSmsChannel(blocker).send(message())
