"""File drops (specs/partners.md, `eau-grand-lyon`): export files out, response files in.

Outbound, each referral, reminder or cancellation is one CSV line, an effect for the partner's
dispatcher, due at the next export slot (`export_every`, see `transports.dispatched`): the slot's
lines are claimed together (`pimms_servicekit.batch_effects`) and written as one file, under a
temporary name then renamed, so the partner never reads half a file. The file's `<n>` is the id of
its first line: increasing, and the same if a crash makes the gateway write the batch again.

Inbound, `*.csv` files dropped in the inbound folder are read here (`read_inbound`), applied by the
caller line by line with durable progress, then `finish` writes the bad lines with their reason to
`processed/<name>.errors.csv` and moves the file to `processed/`. Folders are relative to
`PIMMS_DATA_DIR` unless absolute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pimms_contracts import topics
from pimms_contracts.partners import FileDropTransport, PartnerDirectory
from pimms_servicekit.clock import Clock
from pimms_servicekit.dead_letters import Original
from pimms_servicekit.effects import Delivered, DeliveryResult, Effect, Failed, RetryPolicy
from pimms_servicekit.logging import get_logger

from pimms_partner_gateways.adapters.eau_grand_lyon import (
    PROCESSED_DIR,
    BadLine,
    LineAnswer,
    ResponseFile,
    assemble_export,
    csv_line,
    errors_file_name,
    export_file_name,
    read_response_file,
    render_errors_file,
    temporary_name,
)
from pimms_partner_gateways.transports.dispatched import partner_destination

log = get_logger("pimms.partner_gateways.file_drop")

FILE_DROP_POLICY = RetryPolicy(
    first_delay=timedelta(seconds=5),
    max_delay=timedelta(minutes=5),
    max_attempts=1_000_000,
    give_up_after=timedelta(hours=24),
    concurrency=1,
    attempt_timeout=120.0,
)
MAX_INBOUND_BYTES = 50 * 1024 * 1024


def partner_folder(data_dir: Path, folder: str) -> Path:
    """A partner's folder: relative to the data directory unless absolute."""
    path = Path(folder)
    return path if path.is_absolute() else data_dir / path


def write_atomically(folder: Path, name: str, data: bytes) -> Path:
    """Write `folder/name` under a temporary name, flushed to disk, then renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / temporary_name(name)
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    final = folder / name
    os.replace(temporary, final)
    return final


class FileDropDestination:
    """Writes one partner's due lines as one export file in its outbound folder."""

    def __init__(
        self,
        *,
        partner_id: str,
        directory: Callable[[], PartnerDirectory],
        data_dir: Path,
        clock: Clock,
    ) -> None:
        self.partner_id = partner_id
        self.name = partner_destination(partner_id)
        self.policy = FILE_DROP_POLICY
        self._directory = directory
        self._data_dir = data_dir
        self._clock = clock

    def outbound(self) -> Path | None:
        """The partner's outbound folder, if it is on a file drop."""
        partner = self._directory().get(self.partner_id)
        transport = partner.transport if partner is not None else None
        if not isinstance(transport, FileDropTransport):
            return None
        return partner_folder(self._data_dir, transport.outbound_dir)

    async def deliver(self, effect: Effect) -> DeliveryResult:
        """One line alone (the batch dispatcher normally hands them all over)."""
        return (await self.deliver_batch([effect]))[0]

    async def deliver_batch(self, effects: Sequence[Effect]) -> Sequence[DeliveryResult]:
        """The lines, in the order they were recorded, as one export file."""
        folder = self.outbound()
        if folder is None:
            return [Failed(reason="no_file_drop")] * len(effects)
        ordered = sorted(effects, key=lambda e: e.id)
        name = export_file_name(at=self._clock.now(), sequence=ordered[0].id)
        data = assemble_export(e.payload for e in ordered)
        await asyncio.to_thread(write_atomically, folder, name, data)
        log.info("file_drop.exported", partner_id=self.partner_id, file=name, lines=len(effects))
        results: list[DeliveryResult] = [Delivered(receipt=name)] * len(effects)
        return results


# --- inbound ---


@dataclass(frozen=True, slots=True)
class InboundFile:
    """A response file as read: where it is, what it holds, and its fingerprint."""

    partner_id: str
    path: Path
    digest: str
    parsed: ResponseFile

    def line_key(self, line: int) -> str:
        """The durable name of one line of this file (its content's, whatever the file's name)."""
        return f"file:{self.digest}:{line}"

    def original(self, line: LineAnswer) -> Original:
        """The line as the partner wrote it, to dead-letter it if referrals refuses its report."""
        return Original(
            topic=topics.partner_responses(self.partner_id),
            partition=0,
            offset=line.line,
            key=line.answer.reference.encode(),
            value=csv_line(line.cells),
            headers=(("pimms_file", self.path.name.encode()), ("pimms_line", b"%d" % line.line)),
        )


def inbound_files(folder: Path) -> list[Path]:
    """The response files waiting in an inbound folder, oldest name first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.csv") if p.is_file() and not p.name.startswith("."))


def read_inbound(partner_id: str, path: Path) -> InboundFile:
    """Read a response file whole; a file over the size limit has every line refused."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_INBOUND_BYTES:
        parsed = ResponseFile(header=(), answers=(), bad_lines=())
        log.warning("file_drop.too_large", partner_id=partner_id, file=path.name, size=len(data))
    else:
        parsed = read_response_file(data)
    return InboundFile(partner_id=partner_id, path=path, digest=digest, parsed=parsed)


def finish(file: InboundFile, bad_lines: Sequence[BadLine]) -> Path:
    """Write `processed/<name>.errors.csv` when lines were bad, then move the file there."""
    processed = file.path.parent / PROCESSED_DIR
    processed.mkdir(parents=True, exist_ok=True)
    if bad_lines:
        report = dataclasses.replace(
            file.parsed, bad_lines=tuple(sorted(bad_lines, key=lambda b: b.line))
        )
        write_atomically(processed, errors_file_name(file.path.name), render_errors_file(report))
    target = processed / file.path.name
    os.replace(file.path, target)
    return target
