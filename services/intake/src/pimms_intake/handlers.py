"""Intake use cases: one async function each, reading like the contract's sentences."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID, uuid4

from pimms_contracts import topics
from pimms_contracts.v1.assessments import AssessmentRecorded
from pimms_contracts.v1.frontoffice import (
    FieldError,
    NeedAccepted,
    NeedAcknowledged,
    NeedDocumentsAdded,
    NeedRejected,
    NeedSubmitted,
    NeedWithdrawn,
    ReferralAssessed,
)
from pimms_contracts.v1.internal import IntakeCaseOpened, IntakeCaseWithdrawn, IntakeDocumentsAdded
from pimms_contracts.v1.lifecycle import REFERRAL_EVENT_BY_STATUS, CaseClosed, ReferralEvent
from pimms_servicekit.clock import paris_time
from pimms_servicekit.routing import Handlers
from pimms_servicekit.unit_of_work import UnitOfWork

from pimms_intake.adapters.repository import IntakeRepository
from pimms_intake.domain.assessments import recorded_assessment
from pimms_intake.domain.cases import (
    CaseSnapshot,
    CaseStatus,
    decide_submission,
    fingerprint,
    merge_documents,
    shared_need,
    shared_visitor,
)
from pimms_intake.domain.references import format_reference, reference_prefix
from pimms_intake.domain.validation import Invalid, assessment_errors

Uow = UnitOfWork[IntakeRepository]
handles: Handlers[IntakeRepository] = Handlers()


@handles(NeedSubmitted)
async def submit_need(need: NeedSubmitted, uow: Uow) -> None:
    """A tool submits a need: open a case and answer, or give the same answer again, or refuse."""
    repo = uow.repos
    submission_id = str(need.submission_id)
    existing = await repo.case_by_submission(submission_id)
    digest = fingerprint(need)
    decision = decide_submission(existing, digest)
    if existing is not None:
        uow.about_case(existing.case_id, correlation_id=existing.correlation_id)
    if decision == "conflict":
        await _refuse(
            uow,
            repo,
            submission_id,
            (
                FieldError(
                    field="",
                    code="conflict",
                    message=(
                        "Cette demande (même submission_id) a déjà été reçue avec un contenu "
                        "différent : rien n'a été modifié. Pour corriger un dossier, retirez-le "
                        "puis envoyez une nouvelle demande."
                    ),
                ),
            ),
        )
        return
    if decision == "repeat":
        assert existing is not None
        _answer_accepted(
            uow, existing.case_id, existing.case_reference, existing.accepted_at, submission_id
        )
        uow.log("need.repeated", case_reference=existing.case_reference)
        return

    accepted_at = uow.now()
    prefix = reference_prefix(need.site_id)
    year = paris_time(accepted_at).year
    number = await repo.next_reference_number(f"{prefix}-{year}")
    case_reference = format_reference(prefix, year, number)
    case_id = str(uuid4())
    uow.about_case(case_id)
    visitor = shared_visitor(need)
    repo.add_case(
        need=need,
        case_id=case_id,
        case_reference=case_reference,
        fingerprint=digest,
        correlation_id=uow.correlation_id,
        accepted_at=accepted_at,
        language=visitor.language,
    )
    uow.alias(submission_id)
    uow.alias(case_reference)
    uow.emit(
        IntakeCaseOpened(
            case_id=UUID(case_id),
            case_reference=case_reference,
            submission_id=need.submission_id,
            site_id=need.site_id,
            mediator_id=need.mediator_id,
            channel=need.channel,
            submitted_at=need.submitted_at,
            opened_at=accepted_at,
            visitor=visitor,
            need=shared_need(need),
        ),
        topic=topics.INTAKE_CASES,
        key=case_id,
        detail=f"{need.need.category} at {need.site_id}",
    )
    _answer_accepted(uow, case_id, case_reference, accepted_at, submission_id)
    uow.log(
        "case.opened",
        case_reference=case_reference,
        category=need.need.category,
        site_id=need.site_id,
    )


@handles(Invalid)
async def refuse_invalid(invalid: Invalid, uow: Uow) -> None:
    """A message tied to a submission id but invalid: tell the tool why, field by field."""
    repo = uow.repos
    await _refuse(uow, repo, invalid.submission_id, invalid.errors)
    if invalid.malformed:
        uow.dead_letter(
            reason="schema_invalid",
            error="; ".join(f"{e.field or '(message)'}: {e.code}" for e in invalid.errors)[:900],
        )


@handles(NeedDocumentsAdded)
async def add_documents(command: NeedDocumentsAdded, uow: Uow) -> None:
    """The visitor brought more documents: held referrals may go on."""
    repo = uow.repos
    submission_id = str(command.submission_id)
    case = await _known_case(uow, repo, submission_id)
    if case is None:
        return
    if case.status is not CaseStatus.OPEN:
        await _refuse(
            uow,
            repo,
            submission_id,
            (
                FieldError(
                    field="submission_id",
                    code="case_closed",
                    message=(
                        f"Le dossier {case.case_reference} est clos : les pièces ne peuvent plus y "
                        "être ajoutées. Ouvrez une nouvelle demande si nécessaire."
                    ),
                ),
            ),
        )
        return
    documents = merge_documents(case.documents, command.documents)
    repo.set_documents(case, documents)
    uow.emit(
        IntakeDocumentsAdded(
            case_id=UUID(case.case_id),
            case_reference=case.case_reference,
            added=command.documents,
            documents=documents,
            added_at=command.added_at,
        ),
        topic=topics.INTAKE_CASES,
        key=case.case_id,
    )
    _acknowledge(uow, case, submission_id, "documents_added")
    uow.log(
        "case.documents_added", case_reference=case.case_reference, added=list(command.documents)
    )


@handles(NeedWithdrawn)
async def withdraw_need(command: NeedWithdrawn, uow: Uow) -> None:
    """The tool withdraws the need: referrals are cancelled and the case closes (via referrals)."""
    repo = uow.repos
    submission_id = str(command.submission_id)
    case = await _known_case(uow, repo, submission_id)
    if case is None:
        return
    if case.status is CaseStatus.OPEN:
        repo.mark_withdrawn(case, reason=command.reason, at=uow.now())
        uow.emit(
            IntakeCaseWithdrawn(
                case_id=UUID(case.case_id),
                case_reference=case.case_reference,
                reason=command.reason,
                withdrawn_at=command.withdrawn_at,
            ),
            topic=topics.INTAKE_CASES,
            key=case.case_id,
            detail=command.reason,
        )
        uow.log("case.withdrawn", case_reference=case.case_reference, reason=command.reason)
    _acknowledge(uow, case, submission_id, "withdrawn")


@handles(CaseClosed)
async def close_case(event: CaseClosed, uow: Uow) -> None:
    """Referrals closed the case: documents can no longer be added to it."""
    repo = uow.repos
    repo.mark_closed(str(event.case_id), at=event.occurred_at)
    uow.log("case.closed", case_reference=event.case_reference, outcome=event.outcome)


@handles(*REFERRAL_EVENT_BY_STATUS.values())
async def follow_referral(event: ReferralEvent, uow: Uow) -> None:
    """Referrals moved a referral: remember its status, to check the mediator's assessments."""
    uow.repos.set_referral_status(
        referral_id=str(event.referral_id),
        case_id=str(event.case_id),
        site_id=event.site_id,
        partner_id=event.partner_id,
        status=str(type(event).model_fields["status"].default),  # one status per event type
        at=event.occurred_at,
    )


@handles(ReferralAssessed)
async def assess_referral(assessment: ReferralAssessed, uow: Uow) -> None:
    """A mediator assessed a finished referral: keep it, tell the tool, publish it for review."""
    repo = uow.repos
    submission_id = str(assessment.submission_id)
    case = await repo.case_by_submission(submission_id)
    known = await repo.referrals_of(case.case_id) if case is not None else {}
    if case is not None:
        uow.about_case(case.case_id, correlation_id=case.correlation_id)
    statuses = {referral_id: referral.status for referral_id, referral in known.items()}
    errors = assessment_errors(assessment, case=case, referral_statuses=statuses)
    if errors:
        await _refuse(uow, repo, submission_id, errors)
        return
    assert case is not None
    referral = known[str(assessment.referral_id)]
    recorded = recorded_assessment(assessment)
    now = uow.now()
    repo.save_assessment(assessment=recorded, case_id=case.case_id, recorded_at=now)
    uow.emit(
        AssessmentRecorded(
            case_id=UUID(case.case_id),
            case_reference=case.case_reference,
            site_id=referral.site_id,
            referral_id=assessment.referral_id,
            partner_id=referral.partner_id,
            rating=recorded.rating,
            tags=recorded.tags,
            comment=recorded.comment,
            assessed_at=recorded.assessed_at,
            recorded_at=now,
        ),
        topic=topics.INTAKE_ASSESSMENTS,
        key=case.case_id,
        detail=f"{referral.partner_id}: {recorded.rating}/5",
    )
    _acknowledge(uow, case, submission_id, "assessed")
    uow.log(
        "referral.assessed",
        case_reference=case.case_reference,
        referral_id=referral.referral_id,
        partner_id=referral.partner_id,
        rating=recorded.rating,
        tags=list(recorded.tags),
    )


async def _known_case(uow: Uow, repo: IntakeRepository, submission_id: str) -> CaseSnapshot | None:
    case = await repo.case_by_submission(submission_id)
    if case is None:
        await _refuse(
            uow,
            repo,
            submission_id,
            (
                FieldError(
                    field="submission_id",
                    code="unknown_submission",
                    message=(
                        "Aucune demande acceptée ne porte ce submission_id : envoyez d'abord la "
                        "demande, ou vérifiez l'identifiant."
                    ),
                ),
            ),
        )
        return None
    uow.about_case(case.case_id, correlation_id=case.correlation_id)
    return case


def _answer_accepted(
    uow: Uow,
    case_id: str,
    case_reference: str,
    accepted_at: datetime,
    submission_id: str,
) -> None:
    uow.emit(
        NeedAccepted(
            submission_id=submission_id,
            case_id=UUID(case_id),
            case_reference=case_reference,
            accepted_at=accepted_at,
        ),
        topic=topics.INTAKE_FEEDBACK,
        key=submission_id,
    )


def _acknowledge(
    uow: Uow,
    case: CaseSnapshot,
    submission_id: str,
    what: Literal["documents_added", "withdrawn", "assessed"],
) -> None:
    uow.emit(
        NeedAcknowledged(
            submission_id=submission_id,
            case_id=UUID(case.case_id),
            case_reference=case.case_reference,
            acknowledged=what,
            acknowledged_at=uow.now(),
        ),
        topic=topics.INTAKE_FEEDBACK,
        key=submission_id,
    )


async def _refuse(
    uow: Uow, repo: IntakeRepository, submission_id: str, errors: tuple[FieldError, ...]
) -> None:
    now = uow.now()
    uow.emit(
        NeedRejected(submission_id=submission_id, rejected_at=now, errors=errors),
        topic=topics.INTAKE_FEEDBACK,
        key=submission_id,
        detail=",".join(e.code for e in errors),
    )
    repo.record_rejection(
        message_id=uow.message_id,
        submission_id=submission_id,
        codes=[e.code for e in errors],
        at=now,
    )
    uow.log("need.rejected", submission_id=submission_id, codes=[e.code for e in errors])
