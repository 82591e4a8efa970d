"""The referral state machine (specs/partners.md, "Status vocabulary"), as data and pure functions.

`TRANSITIONS` is the whole lifecycle: for each stage of a referral, who may move it (the actor)
and to which stages. Nothing moves a referral but `move`, which checks the table; every move it
makes comes back with its `Transition`, the history line to store (time, source event, actor).

Stages are the public statuses plus two the public never sees as such:
- `new`: before the referral exists (routing creates it);
- `held`: `on_hold` before transmission. The platform holds a file that lacks documents of its
  partner's checklist (prefecture-69) and has sent nothing; documents that complete it release it
  to `requested`, so the gateway sends it then. Its public status is `on_hold`.

Partners skip steps, `in_progress` and `on_hold` alternate, the same status again changes nothing,
and a move back or out of a final status is impossible: it changes nothing and is told.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pimms_contracts.v1.common import FINAL_STATUSES

from pimms_referrals.domain.documents import missing_documents, receives_documents

Actor = Literal["routing", "gateway", "partner", "mediator", "platform_timer", "withdrawal"]
Stage = Literal[
    "new",
    "held",
    "requested",
    "transmitted",
    "received",
    "accepted",
    "in_progress",
    "on_hold",
    "completed",
    "rejected",
    "expired",
    "cancelled",
    "delivery_failed",
]

_NOTHING: Mapping[Actor, frozenset[Stage]] = {}

# The lifecycle, written out (never computed) so that this table is the specification.
TRANSITIONS: Mapping[Stage, Mapping[Actor, frozenset[Stage]]] = {
    "new": {
        # held: a file incomplete for its partner's checklist is not transmitted
        "routing": frozenset({"requested", "held"}),
    },
    "held": {
        # documents brought: complete -> released to requested; still incomplete -> new list
        "mediator": frozenset({"requested", "held"}),
        "withdrawal": frozenset({"cancelled"}),
    },
    "requested": {
        "gateway": frozenset({"transmitted", "delivery_failed"}),
        # a partner may answer before the gateway's delivery note arrives
        "partner": frozenset(
            {"received", "accepted", "in_progress", "on_hold", "completed", "rejected"}
        ),
        "withdrawal": frozenset({"cancelled"}),
    },
    "transmitted": {
        "partner": frozenset(
            {"received", "accepted", "in_progress", "on_hold", "completed", "rejected"}
        ),
        "platform_timer": frozenset({"expired"}),
        "withdrawal": frozenset({"cancelled"}),
    },
    "received": {
        "partner": frozenset({"accepted", "in_progress", "on_hold", "completed", "rejected"}),
        "platform_timer": frozenset({"expired"}),
        "withdrawal": frozenset({"cancelled"}),
    },
    "accepted": {
        "partner": frozenset({"in_progress", "on_hold", "completed", "rejected"}),
        "platform_timer": frozenset({"expired"}),
        "withdrawal": frozenset({"cancelled"}),
    },
    "in_progress": {
        "partner": frozenset({"on_hold", "completed", "rejected"}),
        "platform_timer": frozenset({"expired"}),
        "withdrawal": frozenset({"cancelled"}),
    },
    "on_hold": {
        "partner": frozenset({"in_progress", "completed", "rejected"}),
        # documents the partner asked for were brought and sent on: still on hold until it says
        "mediator": frozenset({"on_hold"}),
        "platform_timer": frozenset({"expired"}),
        "withdrawal": frozenset({"cancelled"}),
    },
    "completed": _NOTHING,
    "rejected": _NOTHING,
    "expired": _NOTHING,
    "cancelled": _NOTHING,
    "delivery_failed": _NOTHING,
}

# Who caused a status, in the referral's history (the `source` column handlers already write).
BY_ROUTING: Actor = "routing"
BY_GATEWAY: Actor = "gateway"
BY_PARTNER: Actor = "partner"
BY_MEDIATOR: Actor = "mediator"
BY_TIMER: Actor = "platform_timer"
BY_WITHDRAWAL: Actor = "withdrawal"


def allowed(stage: Stage, actor: Actor) -> frozenset[Stage]:
    """The stages `actor` may move a referral in `stage` to."""
    return TRANSITIONS[stage].get(actor, frozenset())


def status_of(stage: Stage) -> str:
    """The public status of a stage (`held` is `on_hold`)."""
    if stage == "new":
        raise ValueError("a referral not yet created has no status")
    return "on_hold" if stage == "held" else stage


def is_final(status: str) -> bool:
    """True for completed, rejected, expired, cancelled and delivery_failed."""
    return status in FINAL_STATUSES


def on_hold_reason(missing_documents: tuple[str, ...]) -> str:
    """Why a referral waits: for documents when the partner listed some, else for the visitor."""
    return "missing_documents" if missing_documents else "waiting_for_visitor"


class IncompleteReport(ValueError):
    """A status report lacking what its status needs (an outcome, a reason)."""


@dataclass(frozen=True)
class StatusChange:
    """A status to move a referral to, with its outcome or reason code where it has one."""

    status: str
    outcome: str | None = None
    reason: str | None = None
    missing_documents: tuple[str, ...] = ()


def reported_change(
    *,
    status: str,
    outcome: str | None = None,
    reason: str | None = None,
    missing_documents: tuple[str, ...] = (),
) -> StatusChange:
    """The change a partner's report asks for; IncompleteReport when it lacks a required code."""
    if status == "completed" and outcome is None:
        raise IncompleteReport("a completed report needs an outcome")
    if status == "rejected" and reason is None:
        raise IncompleteReport("a rejected report needs a reason")
    if status == "on_hold":
        return hold(missing_documents)
    return StatusChange(
        status=status,
        outcome=outcome if status == "completed" else None,
        reason=reason if status == "rejected" else None,
    )


def hold(missing: tuple[str, ...]) -> StatusChange:
    """On hold, for these missing documents or (none listed) waiting for the visitor."""
    return StatusChange(status="on_hold", reason=on_hold_reason(missing), missing_documents=missing)


EXPIRY = StatusChange(status="expired", reason="no_final_answer")
FORWARDED = StatusChange(status="on_hold", reason="documents_forwarded")


@dataclass(frozen=True)
class Referral:
    """One need sent to one partner, and where it stands."""

    referral_id: str
    case_id: str
    partner_id: str
    position: int
    status: str
    ack_within: timedelta
    resolve_within: timedelta
    requested_at: datetime
    updated_at: datetime
    outcome: str | None = None
    reason: str | None = None
    missing_documents: tuple[str, ...] = ()
    transmitted_at: datetime | None = None
    # The first valid partner report: reminders and escalation stop there.
    acknowledged_at: datetime | None = None
    # Deadlines of the SLA ladder, counted from transmission (domain/sla.py acts on them).
    ack_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    reminders_sent: int = 0
    escalated_at: datetime | None = None

    @property
    def final(self) -> bool:
        """True once nothing can change the referral any more."""
        return is_final(self.status)

    @property
    def stage(self) -> Stage:
        """Where the referral stands in TRANSITIONS (`held`: on hold, never transmitted)."""
        if self.status == "on_hold" and self.transmitted_at is None:
            return "held"
        return self.status  # type: ignore[return-value]  # every other stage is its status


@dataclass(frozen=True)
class Transition:
    """One line of a referral's history: from which stage to which, when, why and by whom."""

    referral_id: str
    from_stage: Stage
    to_stage: Stage
    actor: Actor
    at: datetime
    # The ce_id of the event that caused it, or the key of the timer that fired.
    source_event: str | None
    outcome: str | None = None
    reason: str | None = None
    missing_documents: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """The public status the referral has after this transition."""
        return status_of(self.to_stage)

    @property
    def code(self) -> str | None:
        """The outcome or reason code of the new status, where it has one."""
        return self.outcome or self.reason


@dataclass(frozen=True)
class Applied:
    """The referral moved; `referral` is its new state, `change` what the public event says."""

    referral: Referral
    change: StatusChange
    transition: Transition

    @property
    def released(self) -> bool:
        """True when a held file was completed: the gateway sends it now (`referral.requested`)."""
        return self.transition.from_stage == "held" and self.transition.to_stage == "requested"


@dataclass(frozen=True)
class Unchanged:
    """The referral already has this status (or nothing applies): nothing happens, no event."""

    referral: Referral


@dataclass(frozen=True)
class Impossible:
    """The move is not in TRANSITIONS (back, out of a final status, ...): nothing changes."""

    referral: Referral
    reported: str
    actor: Actor = "partner"

    @property
    def explanation(self) -> str:
        """A sentence for dead letters and support staff (codes only, no personal data)."""
        by = self.referral.partner_id if self.actor == "partner" else f"the {self.actor}"
        verb = "reported" if self.actor == "partner" else "asked for"
        return (
            f"{by} {verb} {self.reported} but referral "
            f"{self.referral.referral_id} is {self.referral.status}"
        )


@dataclass(frozen=True)
class Forwarded:
    """Documents a partner asked for were brought: send them on (`referral.documents_forwarded`).

    The referral stays on hold (the partner says when it resumes); `referral.missing_documents`
    are those it asked for that are still missing, told again to the visitor and mediator.
    """

    referral: Referral
    documents: tuple[str, ...]
    transition: Transition


Result = Applied | Unchanged | Impossible


def _target(referral: Referral, change: StatusChange, actor: Actor) -> Stage:
    """The stage a change asks for: on hold by the platform before transmission is `held`."""
    if (
        change.status == "on_hold"
        and actor in ("routing", "mediator")
        and referral.transmitted_at is None
    ):
        return "held"
    return change.status  # type: ignore[return-value]  # checked against TRANSITIONS by move


def move(
    referral: Referral,
    change: StatusChange,
    *,
    actor: Actor,
    at: datetime,
    source_event: str | None = None,
) -> Result:
    """Move a referral as `actor` asks if TRANSITIONS allows it; the history line comes back."""
    current = referral.stage
    target = _target(referral, change, actor)
    permitted = allowed(current, actor)
    if target == current and target not in permitted:
        return Unchanged(referral)
    if target not in permitted:
        return Impossible(referral, change.status, actor)
    updated = dataclasses.replace(
        referral,
        status=status_of(target),
        # outcome, reason and missing documents describe the current status only; the history
        # of earlier ones is in the referral's transitions.
        outcome=change.outcome,
        reason=change.reason,
        missing_documents=change.missing_documents,
        updated_at=at,
    )
    reached_partner = actor == "partner" or (actor == "gateway" and target == "transmitted")
    if updated.transmitted_at is None and reached_partner:
        updated = dataclasses.replace(
            updated,
            transmitted_at=at,
            ack_due_at=at + referral.ack_within,
            resolve_due_at=at + referral.resolve_within,
        )
    if actor == "partner" and updated.acknowledged_at is None:
        updated = dataclasses.replace(updated, acknowledged_at=at)
    transition = Transition(
        referral_id=referral.referral_id,
        from_stage=current,
        to_stage=target,
        actor=actor,
        at=at,
        source_event=source_event,
        outcome=change.outcome,
        reason=change.reason,
        missing_documents=change.missing_documents,
    )
    return Applied(updated, change, transition)


# --- each actor's entry points ---


def open_referral(
    *,
    referral_id: str,
    case_id: str,
    partner_id: str,
    position: int,
    ack_within: timedelta,
    resolve_within: timedelta,
    documents: tuple[str, ...],
    at: datetime,
    source_event: str | None = None,
    checklist: tuple[str, ...] | None = None,
) -> Applied:
    """A referral just routed: `requested`, or `held` (on_hold) when its file lacks documents.

    `checklist`: the partner's `required_documents` in the directory (None: the spec's own).
    """
    missing = missing_documents(partner_id=partner_id, documents=documents, checklist=checklist)
    target: Stage = "held" if missing else "requested"
    assert target in allowed("new", "routing")
    change = hold(missing) if missing else StatusChange(status="requested")
    referral = Referral(
        referral_id=referral_id,
        case_id=case_id,
        partner_id=partner_id,
        position=position,
        status=status_of(target),
        ack_within=ack_within,
        resolve_within=resolve_within,
        requested_at=at,
        updated_at=at,
        reason=change.reason,
        missing_documents=change.missing_documents,
    )
    transition = Transition(
        referral_id=referral_id,
        from_stage="new",
        to_stage=target,
        actor="routing",
        at=at,
        source_event=source_event,
        reason=change.reason,
        missing_documents=change.missing_documents,
    )
    return Applied(referral, change, transition)


def new_referral(
    *,
    referral_id: str,
    case_id: str,
    partner_id: str,
    position: int,
    ack_within: timedelta,
    resolve_within: timedelta,
    at: datetime,
) -> Referral:
    """A referral just routed to its partner, not checked for documents (see `open_referral`)."""
    return Referral(
        referral_id=referral_id,
        case_id=case_id,
        partner_id=partner_id,
        position=position,
        status="requested",
        ack_within=ack_within,
        resolve_within=resolve_within,
        requested_at=at,
        updated_at=at,
    )


def report_from_partner(
    referral: Referral, change: StatusChange, *, at: datetime, source_event: str | None = None
) -> Result:
    """A partner's valid report: any one acknowledges the referral (reminders stop)."""
    return move(referral, change, actor="partner", at=at, source_event=source_event)


def record_transmission(
    referral: Referral, *, at: datetime, source_event: str | None = None
) -> Result:
    """The partner's transport took the referral: the SLA clock starts."""
    return move(
        referral,
        StatusChange(status="transmitted"),
        actor="gateway",
        at=at,
        source_event=source_event,
    )


def record_delivery_failure(
    referral: Referral, *, reason: str, at: datetime, source_event: str | None = None
) -> Result:
    """The referral could not be delivered: it fails for good if it was not delivered yet."""
    change = StatusChange(status="delivery_failed", reason=reason)
    return move(referral, change, actor="gateway", at=at, source_event=source_event)


def withdraw(
    referral: Referral, *, reason: str, at: datetime, source_event: str | None = None
) -> Result:
    """The need was withdrawn: an unfinished referral is cancelled; a final one stays as it is."""
    if referral.final:
        return Unchanged(referral)
    change = StatusChange(status="cancelled", reason=reason)
    return move(referral, change, actor="withdrawal", at=at, source_event=source_event)


def bring_documents(
    referral: Referral,
    *,
    added: tuple[str, ...],
    held: tuple[str, ...],
    at: datetime,
    source_event: str | None = None,
    checklist: tuple[str, ...] | None = None,
) -> Applied | Forwarded | Unchanged:
    """The visitor brought documents (`added`; `held` is the whole set now): what it changes.

    A held file complete for its partner's checklist is released to `requested`; one still
    incomplete gets its new list (unchanged list: nothing to say). A referral its partner put on
    hold for documents gets the added ones sent on. Any other referral: nothing.
    """
    if referral.stage == "held":
        missing = missing_documents(
            partner_id=referral.partner_id, documents=held, checklist=checklist
        )
        if missing == referral.missing_documents:
            return Unchanged(referral)
        change = hold(missing) if missing else StatusChange(status="requested")
        result = move(referral, change, actor="mediator", at=at, source_event=source_event)
        assert isinstance(result, Applied), "TRANSITIONS lets the mediator release a held file"
        return result
    waiting_for_documents = referral.stage == "on_hold" and referral.missing_documents
    receives = receives_documents(referral.partner_id, checklist)
    if not (waiting_for_documents and added and receives):
        return Unchanged(referral)
    still_missing = tuple(code for code in referral.missing_documents if code not in added)
    # Nothing missing any more: it waits for the partner, no longer for the visitor.
    change = hold(still_missing) if still_missing else FORWARDED
    result = move(referral, change, actor="mediator", at=at, source_event=source_event)
    assert isinstance(result, Applied), "TRANSITIONS lets documents go on to a holding partner"
    return Forwarded(result.referral, added, result.transition)


# --- compatible entry points of the first handlers (they infer the actor from the status) ---

_ACTOR_OF_STATUS: Mapping[str, Actor] = {
    "transmitted": "gateway",
    "delivery_failed": "gateway",
    "cancelled": "withdrawal",
    "expired": "platform_timer",
}


def apply_status(referral: Referral, change: StatusChange, *, at: datetime) -> Result:
    """Move a referral by the platform's own step (gateway, withdrawal, timer) for this status."""
    actor = _ACTOR_OF_STATUS.get(change.status, "partner")
    return move(referral, change, actor=actor, at=at)


def apply_partner_status(referral: Referral, change: StatusChange, *, at: datetime) -> Result:
    """A partner's report (as `report_from_partner`, without a source event)."""
    return report_from_partner(referral, change, at=at)
