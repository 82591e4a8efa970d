"""Follows every story through the platform's public topics, and plays the partners and the desk.

Pure: it is handed the records read (`observe`) and returns the messages to send in reaction;
the Kafka reading and producing are in `run.py`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from pimms_contracts import topics

from pimms_cli.demo import frontdesk
from pimms_cli.demo.frontdesk import Message
from pimms_cli.demo.partners import FeedKind, PartnerSimulator, kafka_partners
from pimms_cli.demo.story import (
    AddDocuments,
    Answer,
    Garbage,
    Need,
    PartnerSays,
    SameNeedAs,
    Story,
    Withdraw,
)
from pimms_cli.kafkatail import Seen

PARIS = ZoneInfo("Europe/Paris")


def paris_now() -> datetime:
    """Now, as a desk in metropolitan France writes it."""
    return datetime.now(PARIS)


@dataclass
class Followed:
    """What the platform did with one story, as seen on its public topics."""

    submission_id: str = ""
    site: str = "lyon-8"
    garbage_id: str | None = None
    dead_lettered: bool = False
    case_id: str | None = None
    case_reference: str | None = None
    feedback: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    partners: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    closed: str | None = None
    notifications: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    cancelled_at: set[str] = field(default_factory=set)
    partner_dead_letters: list[str] = field(default_factory=list)
    reacted: set[int] = field(default_factory=set)
    # the closed loop: what the SLA ladder and the document check did
    templates: Counter[str] = field(default_factory=Counter)
    reminders_received: Counter[str] = field(default_factory=Counter)
    chased: list[str] = field(default_factory=list)
    held: list[tuple[str, ...]] = field(default_factory=list)
    released: set[str] = field(default_factory=set)


class Observer:
    """The morning's bookkeeping: one `Followed` per story, in the stories' order."""

    def __init__(
        self,
        stories: Sequence[Story],
        simulators: Mapping[str, PartnerSimulator],
        *,
        clock: Callable[[], datetime] = paris_now,
    ) -> None:
        self.stories = list(stories)
        self.simulators = dict(simulators)
        self.clock = clock
        self.followed = [Followed() for _ in self.stories]
        self.occurred: list[str] = []  # platform times of the stories' lifecycle events
        self._answered: set[tuple[str, str]] = set()

    def topics(self) -> list[str]:
        """Every topic the observer reads (webhook and file-drop partners have no feed topic)."""
        partners = list(self.simulators)
        return [
            topics.INTAKE_FEEDBACK,
            topics.CASES,
            topics.NOTIFICATIONS,
            topics.dead_letters(topics.INTAKE_NEEDS),
            *(topics.partner_referrals(p) for p in kafka_partners(self.simulators)),
            *(topics.dead_letters(topics.partner_responses(p)) for p in partners),
        ]

    def received(self, partner: str, value: bytes) -> list[Message]:
        """A partner outside Kafka got this (a webhook body, a line of an export file): what it
        answers, as `Message`s on its responses topic's name, for its transport to carry."""
        by_reference = self._index(lambda f: f.case_reference)
        return self._as_partner(partner, value, by_reference)

    def opening(self) -> list[Message]:
        """What the desks send first: one message per story."""
        sent: list[Message] = []
        for story, seen in zip(self.stories, self.followed, strict=True):
            submission = story.submission
            if isinstance(submission, Garbage):
                seen.garbage_id = str(uuid.uuid4())
                sent.append(
                    frontdesk.garbage(submission.value, ce_id=seen.garbage_id, at=self.clock())
                )
                continue
            if isinstance(submission, SameNeedAs):
                original = self.stories[submission.story].submission
                assert isinstance(original, Need), "only a need can be sent again"
                body = original.body
            else:
                body = submission.body
            seen.submission_id = str(body["submission_id"])
            seen.site = str(body.get("site_id", "lyon-8"))
            sent.append(frontdesk.need_submitted(body, at=self.clock()))
        return sent

    def observe(self, records: Sequence[Seen]) -> list[Message]:
        """Take new records into account; the messages partners and desks send in reaction."""
        for record in records:
            if record.topic == topics.INTAKE_FEEDBACK:
                self._on_feedback(record)
        replies: list[Message] = []
        by_case = self._index(lambda f: f.case_id)
        by_reference = self._index(lambda f: f.case_reference)
        for record in records:
            if record.topic == topics.CASES:
                replies += self._on_lifecycle(record, by_case)
            elif record.topic == topics.NOTIFICATIONS:
                self._on_notification(record, by_case)
            elif record.topic == topics.dead_letters(topics.INTAKE_NEEDS):
                for garbage in self.followed:
                    if garbage.garbage_id and record.headers.get("ce_id") == garbage.garbage_id:
                        garbage.dead_lettered = True
            elif partner := self._partner_of_feed(record.topic):
                replies += self._as_partner(partner, record.value or b"", by_reference)
            elif record.topic.endswith(".dlt"):
                # a partner's responses dead letters keep its key: the referral reference
                for _, case in by_case.values():
                    if record.key in case.references.values():
                        case.partner_dead_letters.append(
                            record.headers.get("pimms_dlt_reason", "?")
                        )
        return replies

    def _index(self, key: Callable[[Followed], str | None]) -> dict[str, tuple[Story, Followed]]:
        # a repeated need shares its original's case: the original owns it
        return {
            k: (story, seen)
            for story, seen in zip(self.stories, self.followed, strict=True)
            if (k := key(seen)) and not isinstance(story.submission, SameNeedAs)
        }

    def _partner_of_feed(self, topic: str) -> str | None:
        return next((p for p in self.simulators if topics.partner_referrals(p) == topic), None)

    def _on_feedback(self, record: Seen) -> None:
        body = record.json() or {}
        kind = record.ce_type.split(".")[-2] if record.ce_type else "?"
        for story, seen in zip(self.stories, self.followed, strict=True):
            if seen.submission_id != body.get("submission_id"):
                continue
            if len(seen.feedback) >= story.desk_answers:
                continue
            seen.feedback.append(kind)
            if kind == "rejected":
                seen.codes = [e["code"] for e in body.get("errors", [])]
            if kind == "accepted":
                seen.case_id = body["case_id"]
                seen.case_reference = body["case_reference"]
            return

    def _on_lifecycle(
        self, record: Seen, by_case: dict[str, tuple[Story, Followed]]
    ) -> list[Message]:
        body = record.json() or {}
        found = by_case.get(str(body.get("case_id")))
        if found is None:
            return []
        story, seen = found
        if isinstance(body.get("occurred_at"), str):
            self.occurred.append(body["occurred_at"])
        status = str(body.get("status", "?"))
        kind = record.ce_type.split(".")[-2] if record.ce_type else "?"
        if kind in {"reminded", "escalated"}:
            # a step of the SLA ladder: the referral's status is unchanged
            number = f" {body.get('reminder')}" if kind == "reminded" else ""
            seen.chased.append(f"{body.get('partner_id')} {kind}{number}")
            return []
        partner_id = body.get("partner_id")
        if status == "on_hold" and body.get("reason") == "missing_documents" and partner_id:
            seen.held.append(tuple(body.get("missing_documents") or ()))
        if status == "requested" and seen.held and partner_id:
            seen.released.add(str(partner_id))
        seen.statuses.append(status)
        if "partner_id" in body:
            seen.partners[body["partner_id"]] = status
            detail = body.get("outcome") or body.get("reason")
            if detail:
                seen.outcomes[body["partner_id"]] = str(detail)
        if status == "closed":
            seen.closed = body.get("outcome")
        replies: list[Message] = []
        for index, reaction in enumerate(story.reactions):
            if reaction.status == status and index not in seen.reacted:
                seen.reacted.add(index)
                replies += self._act(reaction.action, seen)
        return replies

    def _act(self, action: Withdraw | PartnerSays | AddDocuments, seen: Followed) -> list[Message]:
        at = self.clock()
        if isinstance(action, Withdraw):
            return [
                frontdesk.withdrawn(
                    submission_id=seen.submission_id, reason=action.reason, site=seen.site, at=at
                )
            ]
        if isinstance(action, AddDocuments):
            return [
                frontdesk.documents_added(
                    submission_id=seen.submission_id,
                    documents=action.documents,
                    site=seen.site,
                    at=at,
                )
            ]
        reference = seen.references.get(action.partner_id)
        if reference is None:
            return []
        return [self._partner_answer(action.partner_id, reference, action.answer)]

    def _on_notification(self, record: Seen, by_case: dict[str, tuple[Story, Followed]]) -> None:
        body = record.json() or {}
        found = by_case.get(str(body.get("case_id")))
        if found is None:
            return
        _, seen = found
        if record.ce_type == "fr.pimms.notification.sent.v1":
            seen.notifications[f"{body['audience']} {body['channel']}"] += 1
            seen.templates[f"{body['audience']} {body.get('template')}"] += 1
        else:
            seen.failures.append(str(body.get("reason", "?")))

    def _as_partner(
        self, partner: str, value: bytes, by_reference: dict[str, tuple[Story, Followed]]
    ) -> list[Message]:
        try:
            message = self.simulators[partner].read(value)
        except (ValueError, SyntaxError):  # not the partner's format at all: it ignores it
            return []
        if message is None:
            return []
        if message.kind is FeedKind.CANCELLATION:
            for _, seen in by_reference.values():
                if seen.references.get(partner) == message.reference:
                    seen.cancelled_at.add(partner)
            return []
        found = by_reference.get(str(message.case_reference))
        if found is not None and message.kind is FeedKind.REMINDER:
            found[1].reminders_received[partner] += 1
        if found is None or (partner, message.reference) in self._answered:
            return []  # partners deduplicate by reference; reminders change nothing here
        self._answered.add((partner, message.reference))
        story, seen = found
        seen.references[partner] = message.reference
        return [
            self._partner_answer(partner, message.reference, answer)
            for answer in story.answers.get(partner, ())
        ]

    def _partner_answer(self, partner: str, reference: str, answer: Answer) -> Message:
        value = self.simulators[partner].answer(reference=reference, answer=answer, at=self.clock())
        # Partners send their payload alone, keyed by the reference, without any header.
        return Message(topics.partner_responses(partner), key=reference, value=value)
