"""Answers that do not come on Kafka: webhook bodies and lines of inbound files, each applied once.

Each is applied in a unit of work of its own (`runtime.in_unit_of_work`) by the same use case as a
Kafka answer (`handlers.apply_answer`), and recorded in `partner_inputs` in the same transaction:
a body sent twice, or a file whose processing a crash cut short, has each effect once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from pimms_contracts.partners import FileDropTransport
from pimms_servicekit.dead_letters import Original
from pimms_servicekit.logging import get_logger
from pimms_servicekit.runtime import ServiceRuntime
from sqlalchemy.exc import IntegrityError

from pimms_partner_gateways import handlers
from pimms_partner_gateways.adapters.eau_grand_lyon import LineAnswer, unknown_reference
from pimms_partner_gateways.adapters.registry import PartnerNetwork
from pimms_partner_gateways.adapters.repository import GatewayRepos
from pimms_partner_gateways.domain.model import ReadAnswer
from pimms_partner_gateways.transports.file_drop import (
    InboundFile,
    finish,
    inbound_files,
    partner_folder,
    read_inbound,
)
from pimms_partner_gateways.transports.kafka_responses import PartnerAnswerReceived
from pimms_partner_gateways.transports.webhook_inbound import Applied

log = get_logger("pimms.partner_gateways.inputs")

Runtime = ServiceRuntime[GatewayRepos]
LINES_PER_TRANSACTION = 200


def webhook_key(body: bytes) -> str:
    """The durable name of a webhook body: the same bytes are the same answer."""
    return "webhook:" + hashlib.sha256(body).hexdigest()


def webhook_applier(
    runtime: Runtime,
) -> Callable[[str, ReadAnswer, bytes, Original], Awaitable[Applied]]:
    """What the webhook endpoint calls to apply an answer, once."""

    async def apply(partner_id: str, read: ReadAnswer, body: bytes, original: Original) -> Applied:
        key = webhook_key(body)
        result: list[Applied] = []

        async def work(uow: Any) -> None:
            if await uow.repos.inputs_seen(partner_id, [key]):
                result.append("duplicate")
                return
            applied = await handlers.apply_answer(
                uow, partner_id=partner_id, read=read, original=original
            )
            if applied == "applied":
                uow.repos.record_input(partner_id, key, outcome=applied, at=uow.now())
            result.append(applied)

        try:
            await runtime.in_unit_of_work(work)
        except IntegrityError:  # the same body, applied by a concurrent request meanwhile
            return "duplicate"
        finally:
            structlog.contextvars.clear_contextvars()
        return result[0]

    return apply


ChunkHook = Callable[[InboundFile, int], Awaitable[None]]


class InboundFolders:
    """Watches the inbound folder of every file-drop partner and applies the files found."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        partners: Callable[[], PartnerNetwork],
        data_dir: Any,
        lines_per_transaction: int = LINES_PER_TRANSACTION,
        after_chunk: ChunkHook | None = None,
    ) -> None:
        self.runtime = runtime
        self.partners = partners
        self.data_dir = data_dir
        self.lines_per_transaction = lines_per_transaction
        self.after_chunk = after_chunk

    async def watch(self, *, interval: float) -> None:
        """Scan every `interval` seconds until cancelled."""
        while True:
            try:
                await self.scan()
            except OSError as exc:
                log.warning("file_drop.scan_failed", error=type(exc).__name__)
            await asyncio.sleep(interval)

    async def scan(self) -> int:
        """Process every file waiting now; return how many were processed."""
        network = self.partners()
        done = 0
        for partner in network.partners_on("file_drop"):
            transport = partner.transport
            if network.adapter(partner.id) is None or not isinstance(transport, FileDropTransport):
                continue
            folder = partner_folder(self.data_dir, transport.inbound_dir)
            for path in await asyncio.to_thread(inbound_files, folder):
                await self.process(partner.id, path)
                done += 1
        return done

    async def process(self, partner_id: str, path: Any) -> None:
        """Apply a file's good lines (each once), report its bad ones, move it to processed/."""
        file = await asyncio.to_thread(read_inbound, partner_id, path)
        answers = file.parsed.answers
        outcomes = await self._recorded(file, answers)
        pending = [a for a in answers if file.line_key(a.line) not in outcomes]
        size = self.lines_per_transaction
        for start in range(0, len(pending), size):
            outcomes.update(await self._apply(file, pending[start : start + size]))
            if self.after_chunk is not None:
                await self.after_chunk(file, start + size)
        unknown = [
            unknown_reference(a)
            for a in answers
            if outcomes.get(file.line_key(a.line)) == "unknown_reference"
        ]
        bad = [*file.parsed.bad_lines, *unknown]
        await asyncio.to_thread(finish, file, bad)
        log.info(
            "file_drop.processed",
            partner_id=partner_id,
            file=file.path.name,
            applied=sum(1 for o in outcomes.values() if o == "applied"),
            bad_lines=len(bad),
            reasons=sorted({b.reason for b in bad}),
        )

    async def _recorded(self, file: InboundFile, answers: Sequence[LineAnswer]) -> dict[str, str]:
        found: dict[str, str] = {}

        async def work(uow: Any) -> None:
            keys = [file.line_key(a.line) for a in answers]
            found.update(await uow.repos.inputs_seen(file.partner_id, keys))

        if answers:
            await self.runtime.in_unit_of_work(work)
        return found

    async def _apply(self, file: InboundFile, lines: Sequence[LineAnswer]) -> dict[str, str]:
        outcomes: dict[str, str] = {}

        async def work(uow: Any) -> None:
            received = [
                PartnerAnswerReceived(
                    partner_id=file.partner_id, answer=line.answer, original=file.original(line)
                )
                for line in lines
            ]
            await uow.repos.prefetch(received)  # one query for the chunk's deliveries
            now = uow.now()
            for line in lines:
                applied = await handlers.apply_answer(
                    uow,
                    partner_id=file.partner_id,
                    read=ReadAnswer(answer=line.answer, unknown_fields=file.parsed.unknown_fields),
                    original=file.original(line),
                )
                key = file.line_key(line.line)
                uow.repos.record_input(file.partner_id, key, outcome=applied, at=now)
                outcomes[key] = applied

        try:
            await self.runtime.in_unit_of_work(work)
        finally:
            structlog.contextvars.clear_contextvars()
        return outcomes
