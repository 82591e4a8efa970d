"""`pimms demo`: a morning at PIMMS sites, played against the platform, every case checked.

Front-office tools send needs (valid, duplicate, invalid, without consent, not even JSON); EDF and
La Poste are simulated on their own Kafka feeds, answering in their own formats (a wrong status
word among them); a mediator withdraws a case solved at the desk; a visitor withdraws another.
The table at the end shows each case, its reference, partners, final status and notifications.
Exit status 0 only if every case reached its expected state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from defusedxml import ElementTree
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_servicekit.kafka import broker_reachable

from pimms_cli.config import DEFAULT_BOOTSTRAP, configured_bootstrap, data_dir
from pimms_cli.kafkatail import KafkaTail, Producer, Seen
from pimms_cli.platform import Platform, platform_is_running

PARIS = ZoneInfo("Europe/Paris")
LA_POSTE_NS = "urn:laposte:mediation:pimms:1"
DESK = "urn:pimms:site:{site}:frontdesk"


@dataclass
class DemoCase:
    """One situation at the desk and what the platform must make of it."""

    label: str
    need: dict[str, Any] | None = None
    raw: bytes | None = None
    duplicate_of: int | None = None
    answers: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    withdraw_when: str | None = None
    withdraw_reason: str = "visitor_request"
    resend_after_close: dict[str, str] | None = None
    expect: str = ""
    expect_codes: tuple[str, ...] = ()
    expect_partners: dict[str, str] = field(default_factory=dict)
    expect_unreachable: bool = False
    expect_partner_dead_letters: tuple[str, ...] = ()
    # what happened
    submission_id: str = ""
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
    partner_messages: list[str] = field(default_factory=list)
    partner_dead_letters: list[str] = field(default_factory=list)
    withdrawn: bool = False
    resent: bool = False


def edf(statut: str, **extra: str) -> dict[str, str]:
    """An EDF answer."""
    return {"statut": statut, **extra}


def poste(etat: str, **extra: str) -> dict[str, str]:
    """A La Poste answer."""
    return {"etat": etat, **extra}


def scenario() -> list[DemoCase]:
    """The morning: 13 situations across categories, postal codes, languages and channels."""
    sms = {"sms": True, "email": False}
    mail = {"sms": False, "email": True}
    none = {"sms": False, "email": False}
    return [
        DemoCase(
            "Unpaid EDF bill, cut-off threatened (Lyon 8e, SMS, fr)",
            need_submitted(),
            answers={
                "edf": [
                    edf("RECU"),
                    edf("PRIS_EN_CHARGE"),
                    edf("CLOS", resultat="SOLUTION_TROUVEE"),
                ]
            },
            expect="closed:resolved",
            expect_partners={"edf": "completed"},
        ),
        DemoCase("The same need sent twice by the desk tool", duplicate_of=0, expect="duplicate"),
        DemoCase(
            "Parcel lost for three weeks (Paris 11e, e-mail, en)",
            need_submitted(
                site_id="paris-11",
                visitor__first_name="John",
                visitor__last_name="Smith",
                visitor__postal_code="75011",
                visitor__preferred_language="en-GB",
                visitor__email="john.smith@example.org",
                visitor__contact_consent=mail,
                need__category="postal_service",
                need__urgency="normal",
                need__summary="Colis non distribué depuis trois semaines",
            ),
            answers={
                "la-poste": [poste("recue"), poste("acceptee"), poste("traitee", issue="favorable")]
            },
            expect="closed:resolved",
            expect_partners={"la-poste": "completed"},
        ),
        DemoCase(
            "Energy debt, no solution found (Marseille 3e, SMS, ar)",
            need_submitted(
                site_id="marseille-3",
                visitor__first_name="فاطمة",
                visitor__last_name="بن علي",
                visitor__postal_code="13003",
                visitor__preferred_language="ar",
                visitor__contact_consent=sms,
                need__urgency="normal",
            ),
            answers={"edf": [edf("RECU"), edf("CLOS", resultat="SANS_SOLUTION")]},
            resend_after_close={"partner": "edf", "statut": "RECU"},
            expect="closed:not_resolved",
            expect_partners={"edf": "completed"},
            expect_partner_dead_letters=("impossible_transition",),
        ),
        DemoCase(
            "Registered letter refused, summary with < and & (Ajaccio 2A, SMS, fr)",
            need_submitted(
                site_id="ajaccio",
                visitor__first_name="Łukasz",
                visitor__last_name="Wójcik",
                visitor__postal_code="20090",
                need__category="postal_service",
                need__urgency="low",
                need__summary="Lettre recommandée <AR> refusée & renvoyée",
            ),
            answers={"la-poste": [poste("recue"), poste("rejetee", motif="hors-perimetre")]},
            expect="closed:not_resolved",
            expect_partners={"la-poste": "rejected"},
        ),
        DemoCase(
            "Phone contract dispute: no telecom partner yet (Lyon 3e); solved at the desk",
            need_submitted(
                visitor__postal_code="69003", need__category="telecom", need__urgency="normal"
            ),
            withdraw_when="unroutable",
            withdraw_reason="resolved_at_desk",
            expect="closed:withdrawn",
        ),
        DemoCase(
            "Water bill in Paris: Eau du Grand Lyon only serves Rhône (stays with the mediator)",
            need_submitted(
                site_id="paris-11",
                visitor__postal_code="75020",
                need__category="water_bill",
                need__urgency="normal",
            ),
            expect="open:unroutable",
        ),
        DemoCase(
            "Desk tool bug: phone typed with spaces, unknown category",
            need_submitted(visitor__phone="06 12 34", need__category="cooking"),
            expect="rejected",
            expect_codes=("invalid_format", "invalid_value"),
        ),
        DemoCase(
            "Visitor did not agree to share the need",
            need_submitted(consent_to_share=False),
            expect="rejected",
            expect_codes=("consent_missing",),
        ),
        DemoCase(
            "Electricity debt, visitor reachable by no channel (Saint-Denis, La Réunion)",
            need_submitted(
                site_id="saint-denis-reunion",
                visitor__postal_code="97400",
                visitor__contact_consent=none,
                visitor__email=None,
            ),
            answers={
                "edf": [edf("RECU"), edf("EN_COURS"), edf("CLOS", resultat="CLIENT_INJOIGNABLE")]
            },
            expect="closed:not_resolved",
            expect_partners={"edf": "completed"},
            expect_unreachable=True,
        ),
        DemoCase(
            "EDF payment plan, then the visitor withdraws (Lille, e-mail, fr)",
            need_submitted(
                site_id="lille-sud",
                visitor__postal_code="59000",
                visitor__contact_consent=mail,
                need__urgency="normal",
            ),
            answers={"edf": [edf("RECU")]},
            withdraw_when="received",
            withdraw_reason="visitor_request",
            expect="closed:withdrawn",
            expect_partners={"edf": "cancelled"},
        ),
        DemoCase(
            "Parcel held at the post office, visitor must bring ID (Brest, SMS, fr)",
            need_submitted(
                site_id="brest",
                visitor__postal_code="29200",
                need__category="postal_service",
                need__urgency="normal",
                need__summary="Colis en instance, pièce d'identité requise",
            ),
            answers={
                "la-poste": [
                    poste("égarée"),
                    poste("recue"),
                    poste("attente-usager"),
                    poste("en-cours"),
                    poste("traitee", issue="favorable"),
                ]
            },
            expect="closed:resolved",
            expect_partners={"la-poste": "completed"},
            expect_partner_dead_letters=("unknown_status",),
        ),
        DemoCase(
            "A tool sends something that is not JSON",
            raw=b"<need>oops</need>",
            expect="dead_lettered",
        ),
    ]


class Morning:
    """Plays the scenario and follows every case through the platform's public topics."""

    def __init__(self, bootstrap: str, cases: list[DemoCase]) -> None:
        self.bootstrap = bootstrap
        self.cases = cases
        self.producer = Producer(bootstrap)
        partner_topics = [topics.partner_referrals("edf"), topics.partner_referrals("la-poste")]
        self.tail = KafkaTail(
            bootstrap,
            [
                topics.INTAKE_FEEDBACK,
                topics.CASES,
                topics.NOTIFICATIONS,
                *partner_topics,
                topics.dead_letters(topics.INTAKE_NEEDS),
                topics.dead_letters(topics.partner_responses("edf")),
                topics.dead_letters(topics.partner_responses("la-poste")),
            ],
        )
        self.read = 0
        self.answered: set[str] = set()
        self.garbage_ids: set[str] = set()
        self.garbage_dead = 0

    async def play(self, timeout: float) -> bool:
        """Send the needs, act as partners and mediators, until every case is where expected."""
        await self.producer.start()
        await self.tail.start()
        try:
            await self._send_needs()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.tail.changed.clear()
                await self._absorb()
                if all(self._done(c) for c in self.cases):
                    return True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.tail.changed.wait(), timeout=0.5)
            await self._absorb()
            return all(self._done(c) for c in self.cases)
        finally:
            await self.tail.stop()
            await self.producer.stop()

    async def _send_needs(self) -> None:
        for case in self.cases:
            if case.duplicate_of is not None:
                original = self.cases[case.duplicate_of]
                case.need = dict(original.need or {})
            if case.raw is not None:
                ce_id = str(uuid.uuid4())
                self.garbage_ids.add(ce_id)
                await self.producer.send(
                    topics.INTAKE_NEEDS,
                    key=None,
                    value=case.raw,
                    headers=_headers("fr.pimms.need.submitted.v1", "lyon-8", ce_id),
                )
                continue
            assert case.need is not None
            case.submission_id = case.need["submission_id"]
            await self.producer.send(
                topics.INTAKE_NEEDS,
                key=case.submission_id,
                value=json.dumps(case.need, ensure_ascii=False).encode(),
                headers=_headers("fr.pimms.need.submitted.v1", case.need.get("site_id", "lyon-8")),
            )

    async def _absorb(self) -> None:
        new = self.tail.records[self.read :]
        self.read = len(self.tail.records)
        for record in new:
            if record.topic == topics.INTAKE_FEEDBACK:
                self._on_feedback(record)
        by_case: dict[str, DemoCase] = {
            c.case_id: c for c in self.cases if c.case_id and c.duplicate_of is None
        }
        by_reference: dict[str, DemoCase] = {
            c.case_reference: c for c in self.cases if c.case_reference and c.duplicate_of is None
        }
        for record in new:
            if record.topic == topics.CASES:
                await self._on_lifecycle(record, by_case)
            elif record.topic == topics.NOTIFICATIONS:
                self._on_notification(record, by_case)
            elif record.topic.startswith("pimms.partner.") and record.topic.endswith(
                ".referrals.v1"
            ):
                await self._as_partner(record, by_reference)
            elif record.topic == topics.dead_letters(topics.INTAKE_NEEDS):
                if record.headers.get("ce_id") in self.garbage_ids:
                    self.garbage_dead += 1
            elif record.topic.endswith(".responses.v1.dlt"):
                # dead letters keep the partner's key: the referral reference
                for case in by_case.values():
                    if record.key in case.partner_messages:
                        case.partner_dead_letters.append(
                            record.headers.get("pimms_dlt_reason", "?")
                        )

    def _on_feedback(self, record: Seen) -> None:
        body = record.json() or {}
        kind = (record.ce_type or "").split(".")[-2] if record.ce_type else "?"
        for case in self.cases:
            if case.submission_id != body.get("submission_id"):
                continue
            if len(case.feedback) >= (2 if case.withdraw_when else 1):
                continue
            case.feedback.append(kind)
            if kind == "rejected":
                case.codes = [e["code"] for e in body.get("errors", [])]
            if kind == "accepted":
                case.case_id = body["case_id"]
                case.case_reference = body["case_reference"]
            break

    async def _on_lifecycle(self, record: Seen, by_case: dict[str, DemoCase]) -> None:
        body = record.json() or {}
        case = by_case.get(str(body.get("case_id")))
        if case is None:
            return
        status = body.get("status", "?")
        case.statuses.append(status)
        if "partner_id" in body:
            case.partners[body["partner_id"]] = status
            detail = body.get("outcome") or body.get("reason")
            if detail:
                case.outcomes[body["partner_id"]] = str(detail)
        if status == "closed":
            case.closed = body.get("outcome")
            await self._after_close(case)
        if case.withdraw_when == status and not case.withdrawn:
            case.withdrawn = True
            await self.producer.send(
                topics.INTAKE_NEEDS,
                key=case.submission_id,
                value=json.dumps(
                    {
                        "submission_id": case.submission_id,
                        "reason": case.withdraw_reason,
                        "withdrawn_at": _now(),
                    }
                ).encode(),
                headers=_headers("fr.pimms.need.withdrawn.v1", "lyon-8"),
            )

    def _on_notification(self, record: Seen, by_case: dict[str, DemoCase]) -> None:
        body = record.json() or {}
        case = by_case.get(str(body.get("case_id")))
        if case is None:
            return
        if record.ce_type == "fr.pimms.notification.sent.v1":
            case.notifications[f"{body['audience']} {body['channel']}"] += 1
        else:
            case.failures.append(body.get("reason", "?"))

    async def _as_partner(self, record: Seen, by_reference: dict[str, DemoCase]) -> None:
        partner = record.topic.split(".")[2]
        if partner == "edf":
            body = record.json() or {}
            reference, dossier = body.get("reference"), body.get("dossierPimms")
            if body.get("statut") == "ANNULE":
                for case in by_reference.values():
                    if reference in case.partner_messages:
                        case.partner_messages.append("ANNULE")
                return
        else:
            root = ElementTree.fromstring(record.value or b"")
            reference, dossier = root.get("reference"), root.get("dossier")
            if root.tag == f"{{{LA_POSTE_NS}}}annulation":
                for case in by_reference.values():
                    if reference in case.partner_messages:
                        case.partner_messages.append("annulation")
                return
        target = by_reference.get(str(dossier))
        if target is None or reference is None or reference in self.answered:
            return
        self.answered.add(reference)
        target.partner_messages.append(reference)
        for answer in target.answers.get(partner, []):
            await self._answer(partner, reference, target, answer)

    async def _answer(
        self, partner: str, reference: str, case: DemoCase, answer: dict[str, str]
    ) -> None:
        now = datetime.now(PARIS).isoformat(timespec="seconds")
        if partner == "edf":
            value = json.dumps({"reference": reference, **answer, "horodatage": now}).encode()
        else:
            etat = answer["etat"]
            inner = "".join(f"<{k}>{v}</{k}>" for k, v in answer.items() if k != "etat")
            value = (
                f'<reponse xmlns="{LA_POSTE_NS}" reference="{reference}" etat="{etat}" '
                f'horodatage="{now}">{inner}</reponse>'
            ).encode()
        # Partners send their payload alone, keyed by the reference, without any header.
        await self.producer.send(topics.partner_responses(partner), key=reference, value=value)

    async def _after_close(self, case: DemoCase) -> None:
        if case.resend_after_close and not case.resent:
            case.resent = True
            partner = case.resend_after_close["partner"]
            reference = next(
                (m for m in case.partner_messages if m not in {"ANNULE", "annulation"}), None
            )
            if reference is not None:
                await self._answer(
                    partner, reference, case, {"statut": case.resend_after_close["statut"]}
                )

    def _done(self, case: DemoCase) -> bool:
        return not problems(case, self)


def problems(case: DemoCase, morning: Morning) -> list[str]:
    """What differs from the expectation (empty when the case is where it should be)."""
    found: list[str] = []
    if case.expect == "dead_lettered":
        return [] if morning.garbage_dead else ["not dead-lettered yet"]
    if case.expect == "duplicate":
        original = morning.cases[case.duplicate_of or 0]
        if case.feedback != ["accepted"] or original.feedback[:1] != ["accepted"]:
            return ["no second need.accepted yet"]
        return []
    if case.expect == "rejected":
        if case.feedback != ["rejected"]:
            return ["no need.rejected yet"]
        if sorted(set(case.codes)) != sorted(case.expect_codes):
            found.append(f"codes {case.codes}")
        return found
    if "accepted" not in case.feedback:
        return ["no need.accepted yet"]
    if case.expect == "open:unroutable":
        if "unroutable" not in case.statuses:
            found.append("not unroutable yet")
        if case.closed:
            found.append("closed but should stay open")
        if not case.notifications.get("mediator mediator_inbox"):
            found.append("mediator not told")
        return found
    expected_outcome = case.expect.split(":", 1)[1]
    if case.closed != expected_outcome:
        found.append(f"case {case.closed or 'open'}")
    for partner, status in case.expect_partners.items():
        if case.partners.get(partner) != status:
            found.append(f"{partner} {case.partners.get(partner, 'none')}")
    if case.expect_partners.get("edf") == "cancelled" and "ANNULE" not in case.partner_messages:
        found.append("EDF not told of the cancellation")
    visitor_sent = sum(n for k, n in case.notifications.items() if k.startswith("visitor"))
    if case.expect_unreachable:
        if visitor_sent or "no_reachable_channel" not in case.failures:
            found.append("unreachable visitor not reported")
    elif case.closed and not any(k.startswith("visitor") for k in case.notifications):
        found.append("visitor not notified")
    if case.closed and not case.notifications.get("mediator mediator_inbox"):
        found.append("mediator not notified")
    for reason in case.expect_partner_dead_letters:
        if reason not in case.partner_dead_letters:
            found.append(f"no partner dead letter {reason}")
    return found


def _headers(ce_type: str, site: str, ce_id: str | None = None) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", (ce_id or str(uuid.uuid4())).encode()),
        ("ce_source", DESK.format(site=site).encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", _now().encode()),
        ("content-type", b"application/json"),
    ]


def _now() -> str:
    return datetime.now(UTC).astimezone(PARIS).isoformat(timespec="seconds")


def report(morning: Morning) -> str:
    """The table at the end."""
    rows = [("#", "Situation", "Reference", "Partners", "Final status", "Notifications", "Check")]
    for index, case in enumerate(morning.cases, start=1):
        partners = (
            ", ".join(
                f"{p}: {s}"
                + (f" ({morning_outcome})" if (morning_outcome := case.outcomes.get(p)) else "")
                for p, s in case.partners.items()
            )
            or "-"
        )
        if case.expect == "dead_lettered":
            status = "dead-lettered (not JSON)" if morning.garbage_dead else "?"
        elif case.expect == "duplicate":
            original = morning.cases[case.duplicate_of or 0]
            status = f"same answer again ({original.case_reference})" if case.feedback else "?"
        elif case.feedback and case.feedback[0] == "rejected":
            status = "rejected: " + ", ".join(case.codes)
        elif case.closed:
            status = f"closed: {case.closed}"
        elif "unroutable" in case.statuses:
            status = "open: unroutable, with the mediator"
        else:
            status = case.statuses[-1] if case.statuses else "-"
        notes = ", ".join(
            f"{k.replace(' mediator_inbox', '')} x{n}"
            for k, n in sorted(case.notifications.items())
        )
        if "no_reachable_channel" in case.failures:
            notes += (", " if notes else "") + "visitor unreachable"
        if case.partner_dead_letters:
            notes += (
                (", " if notes else "") + "partner DLT: " + ", ".join(case.partner_dead_letters)
            )
        trouble = problems(case, morning)
        rows.append(
            (
                str(index),
                case.label,
                case.case_reference or "-",
                partners,
                status,
                notes or "-",
                "ok" if not trouble else "FAIL: " + "; ".join(trouble),
            )
        )
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(_cut(cell, widths[i]).ljust(widths[i]) for i, cell in enumerate(row))
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


async def run_demo(*, timeout: float = 90.0) -> int:
    """Use the running platform, or start one; play the morning; print the table."""
    started = time.monotonic()
    directory = data_dir()
    bootstrap = configured_bootstrap() or DEFAULT_BOOTSTRAP
    platform: Platform | None = None
    if await broker_reachable(bootstrap) and platform_is_running(directory):
        print(f"Using the platform running on {bootstrap} (data in {directory}).", flush=True)
    else:
        print(
            "No platform running: starting one (embedded broker, SQLite in "
            f"{directory}; logs in {directory / 'logs'}).",
            flush=True,
        )
        platform = Platform(data_dir=directory, bootstrap=configured_bootstrap(), echo=False)
        try:
            await platform.start()
            await platform.wait_ready()
        except RuntimeError as exc:
            print(f"pimms demo: {exc}", file=sys.stderr)
            await platform.stop()
            return 1
        bootstrap = platform.bootstrap_servers
        print(
            f"Platform ready in {time.monotonic() - started:.1f} s (Kafka at {bootstrap}).",
            flush=True,
        )
    try:
        morning = Morning(bootstrap, scenario())
        ok = await morning.play(timeout)
    finally:
        if platform is not None:
            await platform.stop()
    print()
    print(report(morning))
    print()
    passed = sum(1 for c in morning.cases if not problems(c, morning))
    example = next((c.case_reference for c in morning.cases if c.case_reference), "<reference>")
    print(
        f"{passed}/{len(morning.cases)} cases reached their expected state in "
        f"{time.monotonic() - started:.1f} s. Notifications: {directory / 'notifications'}; "
        f"try `pimms trace {example}`."
    )
    return 0 if ok else 1
