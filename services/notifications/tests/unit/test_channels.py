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
    is_message_file,
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
    return sorted(p for p in folder.rglob("*") if is_message_file(p))


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


async def test_a_round_of_message_files_shares_one_sync_and_every_file_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from pimms_notifications.channels import files

    syncs: list[Path] = []
    real = files._sync_file_system

    def counting(directory: Path) -> None:
        syncs.append(directory)
        if files._SYNCFS is not None:
            real(directory)

    monkeypatch.setattr(files, "_sync_file_system", counting)
    monkeypatch.setattr(files, "_SYNCFS", files._SYNCFS or (lambda fd: 0))
    group = files.GroupSync()
    monkeypatch.setattr(files, "_GROUP", group)
    paths = [tmp_path / "sms" / f"{i}.txt" for i in range(20)]
    await asyncio.gather(
        *(files.write_file(p, f"message {i}".encode()) for i, p in enumerate(paths))
    )
    assert [p.read_text() for p in paths] == [f"message {i}" for i in range(20)]
    assert 1 <= len(syncs) < 20  # writers of one round wait for a shared sync
    assert not [p for p in (tmp_path / "sms").iterdir() if p.name.startswith(".")]  # no temp left
    await files.write_file(paths[0], b"again")  # a later writer gets a sync of its own
    assert paths[0].read_text() == "again"
    assert len(syncs) >= 2


async def test_a_failed_sync_fails_the_delivery_as_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pimms_notifications.channels import TransientFailure, files

    def broken(directory: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "_SYNCFS", files._SYNCFS or (lambda fd: 0))
    monkeypatch.setattr(files, "_sync_file_system", broken)
    monkeypatch.setattr(files, "_GROUP", files.GroupSync())
    result = await files.deliver_file(tmp_path / "x.txt", b"x")
    assert result == TransientFailure(reason="file_enospc")


async def test_a_round_is_written_with_one_sync_per_file_system_and_one_result_per_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pimms_notifications.channels import Delivered, TransientFailure, files

    syncs: list[Path] = []
    monkeypatch.setattr(files, "_SYNCFS", files._SYNCFS or (lambda fd: 0))
    monkeypatch.setattr(files, "_sync_file_system", syncs.append)
    inbox = FileMediatorInbox(tmp_path / "inbox")
    (tmp_path / "inbox" / "lyon-8").mkdir(parents=True)
    (tmp_path / "inbox" / "lyon-8" / "m-blocked").write_text("a file, not a folder")
    round_ = [
        message(notification_id=uuid.UUID(int=i), to=to)
        for i, to in enumerate(["m-1", "m-2", "m-blocked", "m-1"], start=1)
    ]
    try:
        results = await inbox.deliver_many(round_)
    finally:
        inbox.close()
    assert results[:2] == [Delivered(), Delivered()]
    assert results[2] == TransientFailure(reason="file_eexist")
    assert results[3] == Delivered()
    assert len(syncs) == 1  # one file system: one sync for the whole round
    written = files_in(tmp_path / "inbox")
    assert [p.relative_to(tmp_path / "inbox").parts[1:] for p in written if p.suffix == ".txt"] == [
        ("m-1", f"{uuid.UUID(int=1)}.txt"),
        ("m-1", f"{uuid.UUID(int=4)}.txt"),
        ("m-2", f"{uuid.UUID(int=2)}.txt"),
    ]
    assert not [p for p in written if p.name.startswith(".")]  # no temporary file left


async def test_a_failed_sync_fails_every_file_of_the_round_as_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pimms_notifications.channels import TransientFailure, files

    def broken(directory: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "_SYNCFS", files._SYNCFS or (lambda fd: 0))
    monkeypatch.setattr(files, "_sync_file_system", broken)
    sms = FileSmsChannel(tmp_path / "sms")
    try:
        results = await sms.deliver_many(
            [message(notification_id=uuid.UUID(int=i)) for i in (1, 2)]
        )
    finally:
        sms.close()
    assert results == [TransientFailure(reason="file_enospc")] * 2


async def test_without_syncfs_each_file_of_a_round_is_synced_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pimms_notifications.channels import Delivered, files

    fsyncs: list[int] = []
    real_fsync = files.os.fsync

    def counting(descriptor: int) -> None:
        fsyncs.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(files, "_SYNCFS", None)
    monkeypatch.setattr(files.os, "fsync", counting)
    email_channel = FileEmailChannel(tmp_path, sender="PIMMS <n@pimms.example>")
    try:
        results = await email_channel.deliver_many(
            [message(notification_id=uuid.UUID(int=i), to="a@example.org") for i in (1, 2, 3)]
        )
    finally:
        email_channel.close()
    assert results == [Delivered()] * 3
    assert len(fsyncs) == 6  # each file and its folder
    assert len(files_in(tmp_path)) == 3


def test_writers_on_threads_with_loops_of_their_own_never_share_a_pending_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blocking channel sends on worker threads, each running its own event loop: a sync
    pending on one loop cannot be awaited from another (it raised RuntimeError, and the message
    waited for a retry)."""
    import asyncio
    import threading

    from pimms_notifications.channels import files

    monkeypatch.setattr(files, "_SYNCFS", files._SYNCFS or (lambda fd: 0))
    monkeypatch.setattr(files, "_sync_file_system", lambda directory: None)
    groups: list[object] = []
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        async def write() -> None:
            groups.append(files._group())
            await files.write_file(tmp_path / f"{index}.txt", b"x")

        try:
            asyncio.run(write())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert len({id(g) for g in groups}) == 4
    assert files._GROUP not in groups
    assert len(files_in(tmp_path)) == 4


def test_a_message_still_being_written_is_not_a_delivered_file(tmp_path: Path) -> None:
    (tmp_path / "33612345678-1.txt").write_text("done", encoding="utf-8")
    (tmp_path / ".tmpx1y2.tmp").write_text("half", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    assert files_in(tmp_path) == [tmp_path / "33612345678-1.txt"]
