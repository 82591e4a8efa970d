"""Naturalisation files: held while incomplete, released when complete, documents sent on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pimms_referrals.domain.documents import missing_documents, receives_documents
from pimms_referrals.domain.lifecycle import (
    Applied,
    Forwarded,
    Impossible,
    Referral,
    Unchanged,
    bring_documents,
    open_referral,
    record_delivery_failure,
    record_transmission,
    report_from_partner,
    reported_change,
    withdraw,
)
from pimms_referrals.domain.sla import due_timers

T0 = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
COMPLETE = ("id_card", "birth_certificate", "proof_of_address", "tax_notices", "language_diploma")


def test_the_prefecture_checklist_of_the_spec() -> None:
    assert missing_documents(partner_id="prefecture-69", documents=()) == COMPLETE
    assert missing_documents(partner_id="prefecture-69", documents=COMPLETE) == ()
    brought = ("language_diploma", "id_card", "last_bill", "proof_of_address")
    assert missing_documents(partner_id="prefecture-69", documents=brought) == (
        "birth_certificate",
        "tax_notices",
    )


@pytest.mark.parametrize("partner_id", ["edf", "la-poste", "eau-grand-lyon", "sncf", "unknown"])
def test_other_partners_need_no_document(partner_id: str) -> None:
    assert missing_documents(partner_id=partner_id, documents=()) == ()
    assert not receives_documents(partner_id)
    assert receives_documents("prefecture-69")


def opened(partner_id: str = "prefecture-69", documents: tuple[str, ...] = ()) -> Applied:
    return open_referral(
        referral_id="r-1",
        case_id="c-1",
        partner_id=partner_id,
        position=0,
        ack_within=timedelta(days=10),
        resolve_within=timedelta(days=180),
        documents=documents,
        at=T0,
        source_event="ev-opened",
    )


def test_an_incomplete_naturalisation_file_is_held_not_requested() -> None:
    result = opened(documents=("id_card", "tax_notices"))
    held = result.referral
    assert (held.status, held.stage, held.transmitted_at) == ("on_hold", "held", None)
    assert result.change.reason == "missing_documents"
    assert held.missing_documents == ("birth_certificate", "proof_of_address", "language_diploma")
    t = result.transition
    assert (t.from_stage, t.to_stage, t.actor, t.at, t.source_event) == (
        "new",
        "held",
        "routing",
        T0,
        "ev-opened",
    )
    assert t.status == "on_hold"
    assert due_timers(held) == ()  # the SLA counts from transmission: nothing was sent


def test_a_complete_file_and_other_partners_are_requested_at_once() -> None:
    assert opened(documents=COMPLETE).referral.status == "requested"
    edf = opened(partner_id="edf")
    assert (edf.referral.status, edf.transition.to_stage) == ("requested", "requested")
    assert not edf.released


def test_documents_that_complete_a_held_file_release_it() -> None:
    held = opened(documents=("id_card",)).referral
    result = bring_documents(
        held,
        added=COMPLETE[1:],
        held=COMPLETE,
        at=T1,
        source_event="ev-docs",
    )
    assert isinstance(result, Applied)
    assert result.released
    assert (result.referral.status, result.referral.missing_documents) == ("requested", ())
    assert (result.transition.actor, result.transition.source_event) == ("mediator", "ev-docs")
    sent = record_transmission(result.referral, at=T1)
    assert isinstance(sent, Applied)
    assert sent.referral.transmitted_at == T1


def test_documents_that_do_not_complete_it_update_the_list() -> None:
    held = opened(documents=("id_card",)).referral
    result = bring_documents(held, added=("tax_notices",), held=("id_card", "tax_notices"), at=T1)
    assert isinstance(result, Applied)
    assert not result.released
    assert result.referral.stage == "held"
    assert result.change.missing_documents == (
        "birth_certificate",
        "proof_of_address",
        "language_diploma",
    )
    assert (result.transition.from_stage, result.transition.to_stage) == ("held", "held")
    # documents that change nothing in the list: nothing to tell again
    again = bring_documents(
        result.referral, added=("last_bill",), held=("id_card", "tax_notices", "last_bill"), at=T1
    )
    assert again == Unchanged(result.referral)


def test_a_held_file_is_never_delivered_nor_answered_but_can_be_withdrawn() -> None:
    held = opened().referral
    assert isinstance(record_transmission(held, at=T1), Impossible)
    assert isinstance(record_delivery_failure(held, reason="http_400", at=T1), Impossible)
    report = report_from_partner(held, reported_change(status="received"), at=T1)
    assert isinstance(report, Impossible)
    assert report.explanation == "prefecture-69 reported received but referral r-1 is on_hold"
    cancelled = withdraw(held, reason="visitor_request", at=T1, source_event="ev-w")
    assert isinstance(cancelled, Applied)
    assert (cancelled.referral.status, cancelled.transition.actor) == ("cancelled", "withdrawal")


def at_prefecture() -> Referral:
    sent = record_transmission(opened(documents=COMPLETE).referral, at=T0)
    assert isinstance(sent, Applied)
    return sent.referral


def test_a_complement_request_holds_it_and_documents_brought_are_sent_on() -> None:
    asked = report_from_partner(
        at_prefecture(),
        reported_change(status="on_hold", missing_documents=("tax_notices", "birth_certificate")),
        at=T1,
    )
    assert isinstance(asked, Applied)
    assert (asked.referral.stage, asked.change.reason) == ("on_hold", "missing_documents")
    later = T1 + timedelta(days=3)
    first = bring_documents(
        asked.referral, added=("tax_notices",), held=(*COMPLETE,), at=later, source_event="ev-d"
    )
    assert isinstance(first, Forwarded)
    assert first.documents == ("tax_notices",)
    assert first.referral.status == "on_hold"
    assert first.referral.missing_documents == ("birth_certificate",)
    assert (first.transition.actor, first.transition.at) == ("mediator", later)
    second = bring_documents(first.referral, added=("birth_certificate",), held=COMPLETE, at=later)
    assert isinstance(second, Forwarded)
    assert second.referral.missing_documents == ()
    assert second.referral.reason == "documents_forwarded"
    # nothing asked for any more: a further document is not sent on by itself
    assert isinstance(
        bring_documents(second.referral, added=("last_bill",), held=COMPLETE, at=later), Unchanged
    )
    resumed = report_from_partner(second.referral, reported_change(status="in_progress"), at=later)
    assert isinstance(resumed, Applied)


def test_documents_go_nowhere_for_a_partner_that_does_not_take_them() -> None:
    edf = record_transmission(opened(partner_id="edf").referral, at=T0)
    assert isinstance(edf, Applied)
    waiting = report_from_partner(
        edf.referral, reported_change(status="on_hold", missing_documents=("last_bill",)), at=T1
    )
    assert isinstance(waiting, Applied)
    brought = bring_documents(waiting.referral, added=("last_bill",), held=("last_bill",), at=T1)
    assert brought == Unchanged(waiting.referral)
    in_progress = at_prefecture()
    assert isinstance(
        bring_documents(in_progress, added=("tax_notices",), held=COMPLETE, at=T1), Unchanged
    )


def test_the_directory_checklist_is_the_one_in_force() -> None:
    # a partner the spec does not know, with a checklist in the directory
    assert missing_documents(
        partner_id="caf-69", documents=("id_card",), checklist=("id_card", "proof_of_address")
    ) == ("proof_of_address",)
    assert receives_documents("caf-69", ("id_card",))
    # the prefecture's checklist, shortened in the directory
    assert missing_documents(partner_id="prefecture-69", documents=(), checklist=("id_card",)) == (
        "id_card",
    )
    assert not receives_documents("prefecture-69", ())  # the directory says it needs none
    held = open_referral(
        referral_id="r-2",
        case_id="c-1",
        partner_id="caf-69",
        position=0,
        ack_within=timedelta(days=1),
        resolve_within=timedelta(days=5),
        documents=("id_card",),
        at=T0,
        checklist=("id_card", "proof_of_address"),
    )
    assert held.referral.missing_documents == ("proof_of_address",)
    released = bring_documents(
        held.referral, added=("last_bill",), held=("id_card", "last_bill"), at=T1, checklist=()
    )
    assert isinstance(released, Applied)
    assert released.referral.status == "requested"
