"""The gateway's database access for one unit of work (a batch, or the relay's hooks).

Reads for a whole batch happen once, in `prefetch`; handlers then read and change the cached rows,
and `flush` writes what changed in a few bulk statements before the commit. Deliveries are updated
column by column (never the whole row), so that what the relay's hooks stamp meanwhile is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pimms_contracts.v1.internal import IntakeCaseOpened, IntakeDocumentsAdded
from pimms_contracts.v1.lifecycle import (
    ReferralCancelled,
    ReferralDocumentsForwarded,
    ReferralReminded,
    ReferralRequested,
)
from pimms_servicekit.db import BulkInsert, in_chunks
from pimms_servicekit.dead_letters import Original
from pimms_servicekit.messages import headers_from_json, headers_to_json
from pimms_servicekit.storage import storable_text
from sqlalchemy import CursorResult, bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from pimms_partner_gateways.adapters.registry import PartnerNetwork
from pimms_partner_gateways.adapters.tables import (
    deliveries,
    dossiers,
    partner_inputs,
    partner_reports,
)
from pimms_partner_gateways.domain.model import (
    Delivery,
    DeliveryStatus,
    Dossier,
    Referral,
    UnknownFieldNames,
)
from pimms_partner_gateways.transports.base import MessageKind
from pimms_partner_gateways.transports.kafka_responses import PartnerAnswerReceived
from pimms_partner_gateways.transports.refusals import ReportRefused

# One INSERT statement per table and batch on PostgreSQL (see BulkInsert).
_INSERT_DOSSIERS = BulkInsert(dossiers)
_INSERT_DELIVERIES = BulkInsert(deliveries)
_INSERT_REPORTS = BulkInsert(partner_reports)
_INSERT_INPUTS = BulkInsert(partner_inputs)

ID_LENGTH = 36
FAILURE_REASON_LENGTH = 40


@dataclass(frozen=True, slots=True)
class PartnerReport:
    """A status report the gateway sent, and the partner's record it came from."""

    report_id: str
    referral_id: str
    partner_id: str
    original: Original
    dead_lettered: bool


class GatewayRepos:
    """Dossiers, deliveries and partner reports of one unit of work, and the partner network."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        partners: PartnerNetwork,
        unknown_fields: UnknownFieldNames | None = None,
    ) -> None:
        self.session = session
        self.partners = partners
        self.unknown_fields = unknown_fields or UnknownFieldNames()
        self._dossiers: dict[str, Dossier | None] = {}
        self._deliveries: dict[str, Delivery | None] = {}
        self._reports: dict[str, PartnerReport | None] = {}
        self._waiting: dict[str, bool] = {}  # by case: has referrals parked for its dossier
        self._marked: dict[tuple[str, str], list[bool]] = {}  # a relay round's answers, in order
        self._new_dossiers: dict[str, dict[str, Any]] = {}
        self._documents: dict[str, dict[str, Any]] = {}
        self._new_deliveries: dict[str, dict[str, Any]] = {}
        self._delivery_changes: dict[str, dict[str, Any]] = {}
        self._new_reports: list[dict[str, Any]] = []
        self._dead_lettered_reports: list[dict[str, Any]] = []
        self._inputs: dict[tuple[str, str], str | None] = {}
        self._new_inputs: list[dict[str, Any]] = []

    # --- the batch ---

    async def prefetch(self, payloads: Sequence[object]) -> None:
        """Load, in one query per table, every dossier, delivery and report the batch names."""
        case_ids: set[str] = set()
        referral_ids: set[str] = set()
        report_ids: set[str] = set()
        opened: set[str] = set()
        for payload in payloads:
            match payload:
                case IntakeCaseOpened():
                    case_ids.add(str(payload.case_id))
                    opened.add(str(payload.case_id))
                case IntakeDocumentsAdded():
                    case_ids.add(str(payload.case_id))
                case ReferralRequested():
                    case_ids.add(str(payload.case_id))
                    referral_ids.add(str(payload.referral_id))
                case ReferralCancelled():
                    referral_ids.add(str(payload.referral_id))
                case ReferralReminded() | ReferralDocumentsForwarded():
                    case_ids.add(str(payload.case_id))
                    referral_ids.add(str(payload.referral_id))
                case PartnerAnswerReceived():
                    referral_ids.add(payload.answer.reference)
                case ReportRefused(report_id=str() as report_id):
                    report_ids.add(report_id)
        await self._load_dossiers(case_ids)
        await self._load_deliveries(referral_ids)
        await self._load_reports(report_ids)
        await self._load_waiting(opened)

    async def flush(self) -> None:
        """Write what the handlers changed, in bulk (called before the commit)."""
        if self._new_dossiers:
            await _INSERT_DOSSIERS(self.session, list(self._new_dossiers.values()))
        if self._documents:
            await self.session.execute(
                update(dossiers).where(dossiers.c.case_id == bindparam("b_case_id")),
                list(self._documents.values()),
            )
        if self._new_deliveries:
            await _INSERT_DELIVERIES(self.session, list(self._new_deliveries.values()))
        for rows in _by_columns(self._delivery_changes).values():
            await self.session.execute(
                update(deliveries).where(deliveries.c.referral_id == bindparam("b_referral_id")),
                rows,
            )
        if self._new_reports:
            await _INSERT_REPORTS(self.session, self._new_reports)
        if self._dead_lettered_reports:
            await self.session.execute(
                update(partner_reports).where(
                    partner_reports.c.report_id == bindparam("b_report_id")
                ),
                self._dead_lettered_reports,
            )
        self._new_dossiers, self._documents = {}, {}
        self._new_deliveries, self._delivery_changes = {}, {}
        self._new_reports, self._dead_lettered_reports = [], []
        if self._new_inputs:
            await _INSERT_INPUTS(self.session, self._new_inputs)
            self._new_inputs = []

    # --- dossiers ---

    async def dossier(self, case_id: str) -> Dossier | None:
        """The dossier of a case, if it has arrived."""
        if case_id not in self._dossiers:
            await self._load_dossiers({case_id})
        return self._dossiers.get(case_id)

    async def add_dossier(self, dossier: Dossier, *, at: datetime) -> bool:
        """Store a dossier; False when it was already there (a replay: it is left as it is)."""
        if await self.dossier(dossier.case_id) is not None:
            return False
        self._dossiers[dossier.case_id] = dossier
        self._new_dossiers[dossier.case_id] = {
            **_dossier_row(dossier),
            "stored_at": at,
            "updated_at": at,
        }
        return True

    async def set_documents(
        self, case_id: str, documents: tuple[str, ...], *, at: datetime
    ) -> bool:
        """Replace the documents of a dossier; False when the dossier is unknown."""
        dossier = await self.dossier(case_id)
        if dossier is None:
            return False
        self._dossiers[case_id] = dataclasses.replace(dossier, documents=documents)
        new = self._new_dossiers.get(case_id)
        if new is not None:
            new.update(documents=list(documents), updated_at=at)
        else:
            self._documents[case_id] = {
                "b_case_id": case_id,
                "documents": list(documents),
                "updated_at": at,
            }
        return True

    # --- deliveries ---

    async def has_waiting_referrals(self, case_id: str) -> bool:
        """Whether referrals of this case wait (parked) for its dossier."""
        if case_id not in self._waiting:
            await self._load_waiting({case_id})
        return self._waiting[case_id]

    async def waiting_deliveries(self, case_id: str) -> list[Delivery]:
        """The referrals of this case that still wait (requested, parked) for its dossier."""
        rows = await self.session.execute(
            select(deliveries.c.referral_id).where(
                deliveries.c.case_id == case_id,
                deliveries.c.status == DeliveryStatus.REQUESTED.value,
            )
        )
        await self._load_deliveries([r.referral_id for r in rows])
        waiting = [
            d
            for d in self._deliveries.values()
            if d is not None and d.case_id == case_id and d.status is DeliveryStatus.REQUESTED
        ]
        return sorted(waiting, key=lambda d: d.referral_id)

    async def delivery(self, referral_id: str) -> Delivery | None:
        """The gateway's record of a referral, if any."""
        if not _could_be_id(referral_id):
            return None
        if referral_id not in self._deliveries:
            await self._load_deliveries({referral_id})
        return self._deliveries.get(referral_id)

    async def record(
        self,
        referral: Referral,
        status: DeliveryStatus,
        *,
        correlation_id: str,
        at: datetime,
        failure_reason: str | None = None,
    ) -> None:
        """Create or move a referral's delivery record to `status`, stamping when it happened."""
        existing = await self.delivery(referral.referral_id)
        stamps: dict[str, Any] = {"status": status.value, "updated_at": at}
        if status is DeliveryStatus.SENT:
            stamps["sent_at"] = at
        elif status is DeliveryStatus.CANCELLED:
            stamps["cancelled_at"] = at
        elif status is DeliveryStatus.FAILED:
            stamps.update(failed_at=at, failure_reason=_failure_reason(failure_reason))
        if status is DeliveryStatus.REQUESTED:
            self._waiting[referral.case_id] = True
        if existing is None:
            self._deliveries[referral.referral_id] = Delivery(
                referral_id=referral.referral_id,
                case_id=referral.case_id,
                partner_id=referral.partner_id,
                status=status,
                correlation_id=correlation_id,
                sent_at=stamps.get("sent_at"),
            )
            self._new_deliveries[referral.referral_id] = {
                "referral_id": referral.referral_id,
                "case_id": referral.case_id,
                "partner_id": referral.partner_id,
                "correlation_id": correlation_id,
                "requested_at": at,
                **{c.name: None for c in _STAMPS},
                **stamps,
            }
            return
        self._deliveries[referral.referral_id] = dataclasses.replace(
            existing, status=status, sent_at=stamps.get("sent_at", existing.sent_at)
        )
        self._change(referral.referral_id, stamps)

    def record_reminder_sent(self, referral_id: str, *, number: int, at: datetime) -> None:
        """Reminder `number` is in the outbox: it is not sent again."""
        existing = self._deliveries.get(referral_id)
        if existing is not None:
            self._deliveries[referral_id] = dataclasses.replace(existing, reminders_sent=number)
        self._change(referral_id, {"reminders_sent": number, "updated_at": at})

    def record_cancellation_sent(self, referral_id: str, *, at: datetime) -> None:
        """The partner's cancellation message is in the outbox."""
        self._change(referral_id, {"cancellation_sent_at": at, "updated_at": at})

    async def mark_all_delivered(self, items: Sequence[tuple[str, MessageKind, datetime]]) -> None:
        """A relay round's deliveries in one conditional statement per kind and time; each
        `mark_delivered` of the round then answers from what it changed."""
        groups: dict[tuple[MessageKind, datetime], list[str]] = {}
        for referral_id, kind, at in items:
            if kind != "reminder":
                groups.setdefault((kind, at), []).append(referral_id)
        for (kind, at), referral_ids in groups.items():
            column = _delivered_column(kind)
            changed: set[str] = set()
            for chunk in in_chunks(referral_ids):
                result = await self.session.execute(
                    update(deliveries)
                    .where(deliveries.c.referral_id.in_(chunk), column.is_(None))
                    .values(_delivered_values(kind, at))
                    .returning(deliveries.c.referral_id)
                )
                changed.update(result.scalars())
            for referral_id in referral_ids:
                self._marked.setdefault((referral_id, kind), []).append(referral_id in changed)

    async def mark_delivered(self, referral_id: str, *, kind: MessageKind, at: datetime) -> bool:
        """The partner's transport has the message; False if that was already recorded.

        One conditional statement, as the relay's hook runs beside the consumer's batches (or
        the answer of `mark_all_delivered` for the round).
        """
        if kind == "reminder":
            return True  # each reminder is a message of its own
        answers = self._marked.get((referral_id, kind))
        if answers:
            return answers.pop(0)
        column = _delivered_column(kind)
        statement = (
            update(deliveries)
            .where(deliveries.c.referral_id == referral_id, column.is_(None))
            .values(_delivered_values(kind, at))
        )
        return _count(await self.session.execute(statement)) > 0

    async def mark_failed(self, referral_id: str, *, reason: str, at: datetime) -> bool:
        """A sent referral could not be delivered for good; False if it moved on meanwhile."""
        statement = (
            update(deliveries)
            .where(
                deliveries.c.referral_id == referral_id,
                deliveries.c.status == DeliveryStatus.SENT.value,
            )
            .values(
                status=DeliveryStatus.FAILED.value,
                failed_at=at,
                failure_reason=_failure_reason(reason),
                updated_at=at,
            )
        )
        return _count(await self.session.execute(statement)) > 0

    # --- partner reports ---

    def keep_report(
        self, *, report_id: str, referral_id: str, partner_id: str, original: Original, at: datetime
    ) -> None:
        """Keep the partner's record behind a status report, to dead-letter it if refused."""
        self._reports[report_id] = PartnerReport(
            report_id=report_id,
            referral_id=referral_id,
            partner_id=partner_id,
            original=original,
            dead_lettered=False,
        )
        self._new_reports.append(
            {
                "report_id": report_id,
                "referral_id": referral_id,
                "partner_id": partner_id,
                "topic": original.topic,
                "partition": original.partition,
                "offset": original.offset,
                "key": original.key,
                "value": original.value,
                "headers": headers_to_json(original.headers),
                "received_at": at,
                "dead_lettered_at": None,
            }
        )

    async def report(self, report_id: str) -> PartnerReport | None:
        """A status report the gateway sent, with the partner's record, if known."""
        if report_id not in self._reports:
            await self._load_reports({report_id})
        return self._reports.get(report_id)

    def report_dead_lettered(self, report: PartnerReport, *, at: datetime) -> None:
        """The report's partner record went to dead letters: never twice."""
        self._reports[report.report_id] = dataclasses.replace(report, dead_lettered=True)
        self._dead_lettered_reports.append(
            {"b_report_id": report.report_id, "dead_lettered_at": at}
        )

    # --- what partners sent outside Kafka (webhook bodies, inbound file lines) ---

    async def inputs_seen(self, partner_id: str, keys: Iterable[str]) -> dict[str, str]:
        """The outcome recorded for each of these inputs already applied (one query)."""
        keys = list(keys)
        wanted = sorted({k for k in keys if (partner_id, k) not in self._inputs})
        for chunk in in_chunks(wanted):
            rows = await self.session.execute(
                select(partner_inputs.c.input_key, partner_inputs.c.outcome).where(
                    partner_inputs.c.partner_id == partner_id,
                    partner_inputs.c.input_key.in_(chunk),
                )
            )
            self._inputs.update({(partner_id, r.input_key): r.outcome for r in rows})
        for key in wanted:
            self._inputs.setdefault((partner_id, key), None)
        return {
            key: outcome
            for key in keys
            if (outcome := self._inputs.get((partner_id, key))) is not None
        }

    def record_input(self, partner_id: str, key: str, *, outcome: str, at: datetime) -> None:
        """This input is applied (or refused for good): never again."""
        self._inputs[(partner_id, key)] = outcome
        self._new_inputs.append(
            {"partner_id": partner_id, "input_key": key, "outcome": outcome, "recorded_at": at}
        )

    # --- loading ---

    async def _load_dossiers(self, case_ids: Iterable[str]) -> None:
        wanted = sorted(c for c in case_ids if c not in self._dossiers)
        for chunk in in_chunks(wanted):
            rows = await self.session.execute(select(dossiers).where(dossiers.c.case_id.in_(chunk)))
            self._dossiers.update({r.case_id: _dossier(r) for r in rows})
        for case_id in wanted:
            self._dossiers.setdefault(case_id, None)

    async def _load_deliveries(self, referral_ids: Iterable[str]) -> None:
        wanted = sorted(r for r in referral_ids if _could_be_id(r) and r not in self._deliveries)
        for chunk in in_chunks(wanted):
            rows = await self.session.execute(
                select(
                    deliveries.c.referral_id,
                    deliveries.c.case_id,
                    deliveries.c.partner_id,
                    deliveries.c.status,
                    deliveries.c.correlation_id,
                    deliveries.c.sent_at,
                    deliveries.c.reminders_sent,
                ).where(deliveries.c.referral_id.in_(chunk))
            )
            self._deliveries.update({r.referral_id: _delivery(r) for r in rows})
        for referral_id in wanted:
            self._deliveries.setdefault(referral_id, None)

    async def _load_reports(self, report_ids: Iterable[str]) -> None:
        wanted = sorted(r for r in report_ids if r not in self._reports and _storable(r, 64))
        for chunk in in_chunks(wanted):
            rows = await self.session.execute(
                select(partner_reports).where(partner_reports.c.report_id.in_(chunk))
            )
            self._reports.update({r.report_id: _report(r) for r in rows})
        for report_id in wanted:
            self._reports.setdefault(report_id, None)

    async def _load_waiting(self, case_ids: Iterable[str]) -> None:
        wanted = sorted(c for c in case_ids if c not in self._waiting)
        for chunk in in_chunks(wanted):
            rows = await self.session.execute(
                select(deliveries.c.case_id)
                .where(
                    deliveries.c.case_id.in_(chunk),
                    deliveries.c.status == DeliveryStatus.REQUESTED.value,
                )
                .distinct()
            )
            self._waiting.update({r.case_id: True for r in rows})
        for case_id in wanted:
            self._waiting.setdefault(case_id, False)

    def _change(self, referral_id: str, stamps: dict[str, Any]) -> None:
        new = self._new_deliveries.get(referral_id)
        if new is not None:
            new.update(stamps)
        else:
            self._delivery_changes.setdefault(referral_id, {"b_referral_id": referral_id}).update(
                stamps
            )


_STAMPS = (
    deliveries.c.sent_at,
    deliveries.c.delivered_at,
    deliveries.c.cancelled_at,
    deliveries.c.cancellation_sent_at,
    deliveries.c.cancellation_delivered_at,
    deliveries.c.failed_at,
    deliveries.c.failure_reason,
)


def _delivered_column(kind: MessageKind) -> ColumnElement[Any]:
    if kind == "referral":
        return deliveries.c.delivered_at
    return deliveries.c.cancellation_delivered_at


def _delivered_values(kind: MessageKind, at: datetime) -> dict[Any, Any]:
    values: dict[Any, Any] = {_delivered_column(kind): at, deliveries.c.updated_at: at}
    if kind == "referral":  # a referral cancelled meanwhile stays cancelled
        values[deliveries.c.status] = _status_if(DeliveryStatus.SENT, then=DeliveryStatus.DELIVERED)
    return values


def _status_if(current: DeliveryStatus, *, then: DeliveryStatus) -> ColumnElement[Any]:
    return case((deliveries.c.status == current.value, then.value), else_=deliveries.c.status)


def _by_columns(changes: dict[str, dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Updates grouped by the columns they set: one executemany statement per group."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in changes.values():
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return groups


def _storable(value: str, limit: int) -> bool:
    return len(value) <= limit and storable_text(value, limit=limit) == value


def _could_be_id(value: str) -> bool:
    """A partner's reference that can name a referral (others are unknown, never queried)."""
    return _storable(value, ID_LENGTH)


def _failure_reason(reason: str | None) -> str | None:
    return storable_text(reason, limit=FAILURE_REASON_LENGTH)


def _dossier_row(dossier: Dossier) -> dict[str, Any]:
    return {
        "case_id": dossier.case_id,
        "case_reference": dossier.case_reference,
        "site_id": dossier.site_id,
        "mediator_id": dossier.mediator_id,
        "submitted_at": dossier.submitted_at.isoformat(),
        "category": dossier.category,
        "urgency": dossier.urgency,
        "summary": dossier.summary,
        "documents": list(dossier.documents),
        "first_name": dossier.first_name,
        "last_name": dossier.last_name,
        "phone": dossier.phone,
        "email": dossier.email,
        "consent_sms": dossier.consent_sms,
        "consent_email": dossier.consent_email,
        "postal_code": dossier.postal_code,
        "language": dossier.language,
    }


def _dossier(row: Any) -> Dossier:
    return Dossier(
        case_id=row.case_id,
        case_reference=row.case_reference,
        site_id=row.site_id,
        mediator_id=row.mediator_id,
        submitted_at=datetime.fromisoformat(row.submitted_at),
        category=row.category,
        urgency=row.urgency,
        summary=row.summary,
        documents=tuple(row.documents),
        first_name=row.first_name,
        last_name=row.last_name,
        phone=row.phone,
        email=row.email,
        consent_sms=row.consent_sms,
        consent_email=row.consent_email,
        postal_code=row.postal_code,
        language=row.language,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        referral_id=row.referral_id,
        case_id=row.case_id,
        partner_id=row.partner_id,
        status=DeliveryStatus(row.status),
        correlation_id=row.correlation_id,
        sent_at=row.sent_at,
        reminders_sent=row.reminders_sent or 0,
    )


def _report(row: Any) -> PartnerReport:
    return PartnerReport(
        report_id=row.report_id,
        referral_id=row.referral_id,
        partner_id=row.partner_id,
        original=Original(
            topic=row.topic,
            partition=row.partition,
            offset=row.offset,
            key=row.key,
            value=row.value,
            headers=tuple(headers_from_json(row.headers)),
        ),
        dead_lettered=row.dead_lettered_at is not None,
    )


def _count(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)
