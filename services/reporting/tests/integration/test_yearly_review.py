"""The yearly review on the real broker: a seeded year of events for several sites and partners,
every figure checked against a count made here from what was generated, rebuilds byte for byte,
and the HTML report rendered by headless Chromium."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import random
import shutil
import struct
import subprocess
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.v1 import lifecycle as lc
from pimms_contracts.v1.assessments import AssessmentRecorded
from pimms_contracts.v1.notifications import NotificationFailed, NotificationSent
from pimms_reporting.app import build_runtime
from pimms_reporting.report import ReportRequest, make_report
from pimms_reporting.settings import ReportingSettings
from pimms_servicekit.db import Database
from pimms_servicekit.messages import Incoming, encode
from pimms_servicekit.tables import inbox
from pimms_servicekit.testing import KafkaEndpoint, envelope_for, produce
from sqlalchemy import func, select

pytestmark = pytest.mark.integration

YEAR = 2026
PARIS = ZoneInfo("Europe/Paris")
SITES = ("lyon-8", "lyon-3", "villeurbanne", "brest")
PARTNERS_BY_CATEGORY = {
    "energy_bill": "edf",
    "postal_service": "la-poste",
    "water_bill": "eau-grand-lyon",
    "rail_travel": "sncf",
    "naturalisation": "prefecture-69",
    "housing_rights": None,  # no partner serves these in the test world: unroutable
    "telecom": None,
    "health_insurance": None,
    "family_benefits": None,
    "banking": None,
    "micro_credit": None,
    "other": None,
}
ACK_WITHIN = {"edf": 2, "la-poste": 3, "eau-grand-lyon": 2, "sncf": 5, "prefecture-69": 10}  # days
RESOLVE_WITHIN = 30  # days
CHANNELS = ("front_desk", "outreach", "phone", "online")
TAGS = (
    "fast",
    "slow",
    "clear_answer",
    "unclear_answer",
    "unreachable_partner",
    "wrong_partner",
    "visitor_satisfied",
    "visitor_unsatisfied",
)
COMMENTS = (
    "Partenaire réactif, merci.",
    "Réponse lente mais complète.",
    "Le visiteur a dû rappeler deux fois.",
)


# --- the generated world: what happened, known by construction ----------------------------------


@dataclass
class TrueReferral:
    referral_id: str
    case_id: str
    site: str
    partner: str
    naturalisation: bool
    created_at: datetime
    held_at: datetime | None = None
    released_at: datetime | None = None
    transmitted_at: datetime | None = None
    ack_at: datetime | None = None
    complement: bool = False
    final: str | None = None
    final_code: str | None = None
    final_at: datetime | None = None
    reminders: list[datetime] = field(default_factory=list)
    escalations: list[datetime] = field(default_factory=list)


@dataclass
class TrueCase:
    case_id: str
    reference: str
    site: str
    category: str
    channel: str | None
    opened_at: datetime
    referrals: list[TrueReferral] = field(default_factory=list)


@dataclass
class TrueNotification:
    case_id: str
    referral_id: str | None
    channel: str | None
    sent: bool
    at: datetime


@dataclass
class TrueAssessment:
    referral: TrueReferral
    rating: int
    tags: tuple[str, ...]
    comment: str | None
    at: datetime


@dataclass
class World:
    cases: list[TrueCase] = field(default_factory=list)
    notifications: list[TrueNotification] = field(default_factory=list)
    assessments: dict[str, TrueAssessment] = field(default_factory=dict)  # the last per referral
    # (topic, key, event or raw JSON with its type, ordered per case)
    messages: list[tuple[str, str, Event | tuple[str, dict[str, Any]]]] = field(
        default_factory=list
    )
    ignored: int = 0  # messages of types the review does not count


class Generator:
    """A seeded year of platform events, as referrals, notifications and intake publish them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.world = World()
        self.per_case: list[tuple[datetime, str, str, Any]] = []

    def run(self, cases: int) -> World:
        start = datetime(2025, 12, 1, tzinfo=UTC)
        span = int((datetime(2027, 1, 1, tzinfo=UTC) - start).total_seconds())
        moments = sorted(start + timedelta(seconds=self.rng.randrange(span)) for _ in range(cases))
        # A case opened at 23:30 UTC on 31 January is in February in Paris.
        moments.append(datetime(2026, 1, 31, 23, 30, tzinfo=UTC))
        for number, opened_at in enumerate(moments, start=1):
            self.per_case = []
            self.case(number, opened_at)
            self.per_case.sort(key=lambda m: m[0])
            self.world.messages += [(topic, key, what) for _, topic, key, what in self.per_case]
        return self.world

    def emit(self, at: datetime, topic: str, key: str, what: Any) -> None:
        self.per_case.append((at, topic, key, what))

    def notify(
        self,
        case: TrueCase,
        referral: TrueReferral | None,
        at: datetime,
        *,
        audience: str = "visitor",
    ) -> None:
        rng = self.rng
        at = at + timedelta(seconds=2)
        referral_id = referral.referral_id if referral else None
        base = {
            "notification_id": uuid.uuid4(),
            "case_id": uuid.UUID(case.case_id),
            "referral_id": uuid.UUID(referral_id) if referral_id else None,
            "audience": audience,
            "template": "t",
            "language": "fr",
        }
        if audience == "mediator":
            channel: str | None = "mediator_inbox"
        else:
            channel = rng.choice(("sms", "sms", "email"))
        roll = rng.random()
        if audience == "visitor" and roll < 0.05:
            event: Event = NotificationFailed(
                **base, channel=None, failed_at=at, reason="no_reachable_channel"
            )
            channel, sent = None, False
        elif roll < 0.1:
            event = NotificationFailed(**base, channel=channel, failed_at=at, reason="provider")
            sent = False
        else:
            event = NotificationSent(**base, channel=channel, sent_at=at)
            sent = True
        self.world.notifications.append(
            TrueNotification(case.case_id, referral_id, channel, sent, at)
        )
        self.emit(at, topics.NOTIFICATIONS, case.case_id, event)

    def case(self, number: int, opened_at: datetime) -> None:
        rng = self.rng
        site = rng.choice(SITES)
        served = [c for c, p in PARTNERS_BY_CATEGORY.items() if p]
        category = rng.choice(served * 2 + list(PARTNERS_BY_CATEGORY))
        channel = rng.choice(CHANNELS) if rng.random() < 0.8 else None
        case = TrueCase(
            case_id=str(uuid.uuid4()),
            reference=f"{site.replace('-', '').upper()[:6]}-{opened_at.year}-{number:06d}",
            site=site,
            category=category,
            channel=channel,
            opened_at=opened_at,
        )
        self.world.cases.append(case)
        about = {
            "case_id": uuid.UUID(case.case_id),
            "case_reference": case.reference,
            "site_id": site,
            "occurred_at": opened_at,
        }
        opened = lc.CaseOpened(**about, category=category, urgency="normal")
        data = json.loads(opened.model_dump_json())
        if channel is not None:
            data["channel"] = channel  # the optional field reporting reads when present
        self.emit(opened_at, topics.CASES, case.case_id, (opened.ce_type, data))
        self.notify(case, None, opened_at)
        partner = PARTNERS_BY_CATEGORY[category]
        if partner is None:
            self.emit(
                opened_at,
                topics.CASES,
                case.case_id,
                lc.ReferralUnroutable(**about, category=category, departement="69"),
            )
            self.world.ignored += 1
            return
        partners = [partner]
        if rng.random() < 0.12:  # some needs go to two partners
            partners.append(rng.choice([p for p in ACK_WITHIN if p != partner]))
        for partner_id in partners:
            self.referral(case, partner_id, opened_at + timedelta(seconds=1))

    def referral(self, case: TrueCase, partner: str, t: datetime) -> None:
        rng = self.rng
        r = TrueReferral(
            referral_id=str(uuid.uuid4()),
            case_id=case.case_id,
            site=case.site,
            partner=partner,
            naturalisation=case.category == "naturalisation",
            created_at=t,
        )
        case.referrals.append(r)

        def about(at: datetime) -> dict[str, Any]:
            return {
                "case_id": uuid.UUID(case.case_id),
                "case_reference": case.reference,
                "site_id": case.site,
                "occurred_at": at,
                "referral_id": uuid.UUID(r.referral_id),
                "partner_id": partner,
            }

        def tell(at: datetime, event: Event) -> None:
            self.emit(at, topics.CASES, case.case_id, event)

        def finish(at: datetime, status: str, code: str | None, event: Event) -> None:
            r.final, r.final_code, r.final_at = status, code, at
            tell(at, event)
            self.notify(case, r, at)
            if status in {"completed", "rejected", "expired"} and rng.random() < 0.45:
                self.assess(case, r, at)

        if partner == "prefecture-69" and rng.random() < 0.35:
            r.held_at = t
            tell(
                t,
                lc.ReferralOnHold(
                    **about(t), reason="missing_documents", missing_documents=("tax_notices",)
                ),
            )
            self.notify(case, r, t)
            if rng.random() < 0.3:  # documents brought, still not complete: held again
                again = t + timedelta(days=1)
                still = ("birth_certificate",)
                held = lc.ReferralOnHold(
                    **about(again), reason="missing_documents", missing_documents=still
                )
                tell(again, held)
            if rng.random() < 0.25:
                at = t + timedelta(days=rng.randint(2, 40), seconds=rng.randrange(3600))
                finish(
                    at,
                    "cancelled",
                    "visitor_request",
                    lc.ReferralCancelled(**about(at), reason="visitor_request"),
                )
                return
            t = t + timedelta(days=rng.randint(1, 20), seconds=rng.randrange(86400))
            r.released_at = t
        tell(t, lc.ReferralRequested(**about(t)))
        if rng.random() < 0.03:
            at = t + timedelta(seconds=90)
            finish(
                at,
                "delivery_failed",
                "endpoint_refused",
                lc.ReferralDeliveryFailed(**about(at), reason="endpoint_refused"),
            )
            return
        tx = t + timedelta(seconds=rng.randint(2, 900))
        r.transmitted_at = tx
        tell(tx, lc.ReferralTransmitted(**about(tx)))
        ack = timedelta(days=ACK_WITHIN[partner])
        behaviour = rng.choices(["normal", "late", "silent", "withdrawn"], [74, 10, 9, 7])[0]
        if behaviour in {"late", "silent"}:
            at = tx + ack
            r.reminders.append(at)
            tell(at, lc.ReferralReminded(**about(at), status="transmitted", reminder=1, due_at=at))
            self.notify(case, r, at, audience="mediator")
        if behaviour == "silent":
            at = tx + 2 * ack
            r.escalations.append(at)
            tell(at, lc.ReferralEscalated(**about(at), status="transmitted", due_at=at))
            self.notify(case, r, at, audience="mediator")
            at = tx + timedelta(days=RESOLVE_WITHIN)
            finish(at, "expired", "no_final_answer", lc.ReferralExpired(**about(at)))
            return
        first = (
            tx + ack + timedelta(seconds=rng.randint(60, 86400))
            if behaviour == "late"
            else tx + timedelta(seconds=rng.randint(600, int(ack.total_seconds()) - 60))
        )
        r.ack_at = first
        word = rng.choice(("received", "accepted"))
        tell(
            first,
            lc.ReferralReceived(**about(first))
            if word == "received"
            else lc.ReferralAccepted(**about(first)),
        )
        now = first
        if rng.random() < 0.5:
            now += timedelta(seconds=rng.randint(600, 3 * 86400))
            tell(now, lc.ReferralInProgress(**about(now)))
        if partner == "prefecture-69" and rng.random() < 0.3:
            now += timedelta(days=1)
            r.complement = True
            tell(
                now,
                lc.ReferralOnHold(
                    **about(now),
                    reason="missing_documents",
                    missing_documents=("language_diploma",),
                ),
            )
            self.notify(case, r, now)
            now += timedelta(days=rng.randint(1, 9))
            tell(now, lc.ReferralDocumentsForwarded(**about(now), documents=("language_diploma",)))
            self.world.ignored += 1
            now += timedelta(seconds=3600)
            tell(now, lc.ReferralInProgress(**about(now)))
        end = now + timedelta(seconds=rng.randint(3600, 20 * 86400))
        if behaviour == "withdrawn":
            finish(
                end,
                "cancelled",
                "visitor_request",
                lc.ReferralCancelled(**about(end), reason="visitor_request"),
            )
        elif rng.random() < 0.15:
            reason = rng.choice(("out_of_scope", "duplicate", "incomplete", "other"))
            finish(end, "rejected", reason, lc.ReferralRejected(**about(end), reason=reason))
        else:
            outcome = rng.choices(["resolved", "not_resolved", "visitor_unreachable"], [7, 2, 1])[0]
            finish(end, "completed", outcome, lc.ReferralCompleted(**about(end), outcome=outcome))

    def assess(self, case: TrueCase, r: TrueReferral, end: datetime) -> None:
        rng = self.rng
        times = 2 if rng.random() < 0.15 else 1  # a second assessment replaces the first
        at = end
        for _ in range(times):
            at = at + timedelta(seconds=rng.randint(3600, 5 * 86400))
            rating = rng.randint(1, 5)
            tags = tuple(sorted(rng.sample(TAGS, rng.randint(0, 3))))
            comment = rng.choice(COMMENTS) if rng.random() < 0.5 else None
            self.world.assessments[r.referral_id] = TrueAssessment(r, rating, tags, comment, at)
            self.emit(
                at,
                topics.INTAKE_ASSESSMENTS,
                case.case_id,
                AssessmentRecorded(
                    case_id=uuid.UUID(case.case_id),
                    case_reference=case.reference,
                    site_id=case.site,
                    referral_id=uuid.UUID(r.referral_id),
                    partner_id=r.partner,
                    rating=rating,
                    tags=tags,
                    comment=comment,
                    assessed_at=at,
                    recorded_at=at,
                ),
            )


def generate(seed: int = 20260, cases: int = 420) -> World:
    return Generator(seed).run(cases)


# --- the independent count ------------------------------------------------------------------------


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return sorted(values)[math.ceil(p * len(values)) - 1]


def as_hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 1)


class Expected:
    """Figures counted straight from the generated world, with the review's stated rules."""

    def __init__(self, world: World, year: int) -> None:
        self.year = year
        self.counts: defaultdict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
        self.ack: defaultdict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.resolve: defaultdict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.ratings: defaultdict[tuple[str, str, str], list[int]] = defaultdict(list)
        for case in world.cases:
            partners = sorted({r.partner for r in case.referrals})
            for key in self.keys(case.site, partners, case.opened_at):
                self.counts[key]["needs"] += 1
                self.counts[key][f"needs.category.{case.category}"] += 1
                self.counts[key][f"needs.channel.{case.channel or 'unknown'}"] += 1
            for r in case.referrals:
                self.referral(r)
        site_of = {c.case_id: c.site for c in world.cases}
        partner_of = {r.referral_id: r.partner for c in world.cases for r in c.referrals}
        for n in world.notifications:
            partners = [partner_of[n.referral_id]] if n.referral_id else []
            name = f"notifications.{'sent' if n.sent else 'failed'}.{n.channel or 'none'}"
            for key in self.keys(site_of[n.case_id], partners, n.at):
                self.counts[key][name] += 1
        for a in world.assessments.values():
            for key in self.keys(a.referral.site, [a.referral.partner], a.at):
                self.ratings[key].append(a.rating)
                for tag in a.tags:
                    self.counts[key][f"assessments.tag.{tag}"] += 1
        self.comments = sorted(
            (a.referral.site, a.referral.partner, a.rating, a.comment)
            for a in world.assessments.values()
            if a.comment and a.at.astimezone(PARIS).year == year
        )

    def keys(
        self, site: str, partners: list[str], at: datetime | None
    ) -> set[tuple[str, str, str]]:
        if at is None:
            return set()
        local = at.astimezone(PARIS)
        if local.year != self.year:
            return set()
        return {
            (s, p, period)
            for s in (site, "*")
            for p in (*partners, "*")
            for period in (f"{local.month:02d}", "year")
        }

    def referral(self, r: TrueReferral) -> None:
        one = [r.partner]
        for key in self.keys(r.site, one, r.created_at):
            self.counts[key]["referrals"] += 1
        if r.ack_at is not None and r.transmitted_at is not None:
            for key in self.keys(r.site, one, r.ack_at):
                self.ack[key].append((r.ack_at - r.transmitted_at).total_seconds())
        if r.final in {"completed", "rejected"} and r.final_at and r.transmitted_at:
            for key in self.keys(r.site, one, r.final_at):
                self.resolve[key].append((r.final_at - r.transmitted_at).total_seconds())
        outcome = {
            "completed": f"outcome.{r.final_code}",
            "rejected": f"outcome.rejected.{r.final_code}",
        }.get(r.final or "", f"outcome.{r.final}")
        if r.final:
            for key in self.keys(r.site, one, r.final_at):
                self.counts[key][outcome] += 1
                if r.final == "expired":
                    self.counts[key]["sla.expiries"] += 1
        for at in r.reminders:
            for key in self.keys(r.site, one, at):
                self.counts[key]["sla.reminders"] += 1
        for at in r.escalations:
            for key in self.keys(r.site, one, at):
                self.counts[key]["sla.escalations"] += 1
        if r.naturalisation:
            for name, at in (
                ("naturalisation.held", r.held_at),
                ("naturalisation.released", r.released_at),
                ("naturalisation.transmitted", r.transmitted_at),
                ("naturalisation.complete", None if r.complement else r.transmitted_at),
            ):
                for key in self.keys(r.site, one, at):
                    self.counts[key][name] += 1

    def value(self, key: tuple[str, str, str], figure: str) -> Any:
        counts = self.counts.get(key, Counter())
        ack, resolve = self.ack.get(key, []), self.resolve.get(key, [])
        ratings = self.ratings.get(key, [])
        transmitted = counts["naturalisation.transmitted"]
        computed = {
            "ack.count": len(ack),
            "ack.median_h": as_hours(nearest_rank(ack, 0.5)),
            "ack.p90_h": as_hours(nearest_rank(ack, 0.9)),
            "resolve.count": len(resolve),
            "resolve.median_h": as_hours(nearest_rank(resolve, 0.5)),
            "resolve.p90_h": as_hours(nearest_rank(resolve, 0.9)),
            "naturalisation.complete_pct": (
                round(100 * counts["naturalisation.complete"] / transmitted, 1)
                if transmitted
                else None
            ),
            "assessments.count": len(ratings),
            "assessments.mean_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
        }
        return computed[figure] if figure in computed else counts[figure]

    def pairs(self) -> set[tuple[str, str]]:
        keys = {*self.counts, *self.ack, *self.resolve, *self.ratings}
        return {(s, p) for s, p, _ in keys}


def for_partner(value: Any, figure: dict[str, Any], basis: Any) -> Any:
    """What a partner's report shows: counts under 5, and figures from under 5 items, as "< 5"."""
    if figure["kind"] == "count":
        return "< 5" if value < 5 else value
    return "< 5" if basis < 5 else value


BASIS = {
    "ack.median_h": "ack.count",
    "ack.p90_h": "ack.count",
    "resolve.median_h": "resolve.count",
    "resolve.p90_h": "resolve.count",
    "naturalisation.complete_pct": "naturalisation.transmitted",
    "assessments.mean_rating": "assessments.count",
}


# --- feeding the world through the service --------------------------------------------------------


def kafka_messages(world: World) -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
    out = []
    for topic, key, what in world.messages:
        if isinstance(what, tuple):
            _, data = what
            event = lc.CaseOpened.model_validate_json(
                json.dumps({k: v for k, v in data.items() if k != "channel"})
            )
            _, headers = encode(event, envelope=envelope_for(event, source="urn:pimms:referrals"))
            value = json.dumps(data).encode()
        else:
            value, headers = encode(what, envelope=envelope_for(what, source="urn:pimms:test"))
        out.append((topic, key.encode(), value, headers))
    return out


def settings_for(kafka: KafkaEndpoint, database_url: str, data_dir: Path) -> ReportingSettings:
    return ReportingSettings(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
        http_port=0,
    )


async def counted(database_url: str) -> int:
    database = Database(database_url)
    try:
        async with database.sessions() as session:
            query = select(func.count()).select_from(inbox).where(inbox.c.consumer == "reporting")
            return int((await session.execute(query)).scalar_one())
    finally:
        await database.dispose()


async def reports(settings: ReportingSettings, out: Path, *, rebuild: bool = False) -> dict:
    """Every report the test reads: internal (3 formats), one site, each partner (3 formats)."""
    files: dict[str, bytes] = {}
    requests = [(None, None, fmt) for fmt in ("json", "csv", "html")]
    requests += [("lyon-8", None, "json")]
    requests += [(None, p, fmt) for p in ACK_WITHIN for fmt in ("json", "csv", "html")]
    for index, (site, partner, fmt) in enumerate(requests):
        paths = await make_report(
            settings,
            ReportRequest(
                year=YEAR,
                site=site,
                partner=partner,
                format=fmt,  # type: ignore[arg-type]
                out_dir=out,
                rebuild=rebuild and index == 0,
            ),
        )
        files.update({p.name: p.read_bytes() for p in paths})
    return files


@pytest.fixture(scope="module")
def world() -> World:
    return generate()


async def test_every_figure_matches_the_generated_year_and_rebuilds_byte_for_byte(
    kafka: KafkaEndpoint, world: World, postgres_url: str, tmp_path: Path
) -> None:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'reporting.db'}"
    settings = settings_for(kafka, sqlite_url, tmp_path)
    runtime = build_runtime(settings)
    app = runtime.build_app()
    await app.start()
    try:
        await produce(kafka.bootstrap_servers, kafka_messages(world))
        wanted = len(world.messages) - world.ignored
        deadline = time.monotonic() + 240
        while (seen := await counted(sqlite_url)) < wanted:
            assert time.monotonic() < deadline, f"projection counted {seen} of {wanted} events"
            await asyncio.sleep(0.5)
    finally:
        await app.stop()

    first = await reports(settings, tmp_path / "live")
    check_internal_review(json.loads(first["revue-2026.json"]), Expected(world, YEAR))
    check_site_review(json.loads(first["revue-2026-lyon-8.json"]), Expected(world, YEAR))
    for partner in ACK_WITHIN:
        check_partner_review(
            json.loads(first[f"revue-2026-{partner}.json"]), Expected(world, YEAR), partner
        )
        assert f"revue-2026-{partner}-commentaires.csv" not in first
        page = first[f"revue-2026-{partner}.html"].decode()
        assert "<blockquote>" not in page  # no mediator's comment goes to a partner
    check_csv_matches_json(first["revue-2026.csv"], json.loads(first["revue-2026.json"]))
    check_comments(first["revue-2026-commentaires.csv"], Expected(world, YEAR))

    # The same projection rebuilt from the topics' start, in place and into a fresh database.
    again = await reports(settings, tmp_path / "rebuilt", rebuild=True)
    assert again == first
    fresh = settings_for(kafka, postgres_url, tmp_path)
    assert await reports(fresh, tmp_path / "fresh", rebuild=True) == first


def check_internal_review(review: dict, expected: Expected) -> None:
    assert review["audience"] == "internal"
    figures = [f["key"] for f in review["figures"]]
    rows = {(r["site"], r["partner"], r["period"]): r["values"] for r in review["rows"]}
    assert {(s, p) for s, p, _ in rows} == expected.pairs()
    assert len(rows) == 13 * len(expected.pairs())  # twelve months and the year
    checked = 0
    for key, values in rows.items():
        for figure in figures:
            assert values[figure] == expected.value(key, figure), (key, figure)
            checked += 1
    assert checked > 10_000
    # The generated year is rich enough for every kind of figure to be exercised.
    total = rows[("*", "*", "year")]
    for figure in figures:
        assert total[figure] not in (0, None), f"{figure} is never exercised"
    assert total["needs"] == sum(rows[("*", "*", f"{m:02d}")]["needs"] for m in range(1, 13))
    comments = sorted(
        (c["site"], c["partner"], c["rating"], c["comment"]) for c in review["comments"]
    )
    assert comments == expected.comments


def check_site_review(review: dict, expected: Expected) -> None:
    rows = {(r["site"], r["partner"], r["period"]): r["values"] for r in review["rows"]}
    assert {s for s, _, _ in rows} == {"lyon-8"}
    for key, values in rows.items():
        assert values == {f: expected.value(key, f) for f in values}
    assert {c["site"] for c in review["comments"]} == {"lyon-8"}


def check_partner_review(review: dict, expected: Expected, partner: str) -> None:
    assert (review["audience"], review["partner"], review["comments"]) == ("partner", partner, [])
    rows = {(r["site"], r["partner"], r["period"]): r["values"] for r in review["rows"]}
    assert {p for _, p, _ in rows} == {partner}
    assert {s for s, p in expected.pairs() if p == partner} == {s for s, _, _ in rows}
    suppressed = 0
    for key, values in rows.items():
        for figure in review["figures"]:
            name = figure["key"]
            value = expected.value(key, name)
            basis = expected.value(key, BASIS[name]) if name in BASIS else None
            shown = for_partner(value, figure, basis)
            assert values[name] == shown, (key, name)
            suppressed += shown == "< 5"
            if figure["kind"] == "count" and isinstance(values[name], int):
                assert values[name] >= 5
    assert suppressed > 0


def check_csv_matches_json(raw: bytes, review: dict) -> None:
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM, for spreadsheets
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    header, lines = table[0], table[1:]
    assert header[:3] == ["Site", "Partenaire", "Période"]
    assert header[3:] == [f["label_fr"] for f in review["figures"]]
    assert len(lines) == len(review["rows"])
    for line, row in zip(lines, review["rows"], strict=True):
        for cell, figure in zip(line[3:], review["figures"], strict=True):
            value = row["values"][figure["key"]]
            if value is None:
                assert cell == ""
            elif figure["kind"] == "count":
                assert cell == str(value)
            else:
                assert "." not in cell
                assert float(cell.replace(",", ".")) == value
    assert lines[-1][:3] == ["Tous les sites", "Tous les partenaires", "Année 2026"]


def check_comments(raw: bytes, expected: Expected) -> None:
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert table[0] == ["Site", "Partenaire", "Mois", "Note", "Étiquettes", "Commentaire"]
    assert sorted(line[5] for line in table[1:]) == sorted(c[3] for c in expected.comments)


# --- the HTML report in a real browser ---------------------------------------------------------


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def incoming(world: World) -> Iterator[Incoming]:
    for offset, (topic, key, value, headers) in enumerate(kafka_messages(world)):
        yield Incoming(topic, 0, offset, key, value, tuple(headers), 0)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of a PNG (8-bit, non-interlaced)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, header = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8
    assert color in (2, 6)
    step = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up = previous[i]
            corner = previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                guess = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + guess) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i : i + 3]) for r in rows for i in range(0, stride, step)]


def render_in_chromium(browser: str, page: Path, tmp_path: Path) -> tuple[str, Path]:
    """The page's DOM once rendered, and a screenshot of its top."""
    profile = tmp_path / "profile"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"]
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, timeout=120, check=True
    ).stdout.decode()
    shot = tmp_path / "report.png"
    size = ["--hide-scrollbars", "--window-size=1280,1500", f"--screenshot={shot}"]
    subprocess.run([*common, *size, page.as_uri()], capture_output=True, timeout=120, check=True)
    return dom, shot


async def test_the_html_report_opens_in_headless_chromium_with_its_charts(
    world: World, tmp_path: Path
) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium on PATH: install it with `apt-get install -y chromium`")
    settings = ReportingSettings(
        data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'reporting.db'}"
    )
    runtime = build_runtime(settings)
    await runtime.prepare_database()
    records = list(incoming(world))
    for start in range(0, len(records), 500):
        await runtime.pipeline.process_incoming(records[start : start + 500])
    await runtime.database.dispose()
    [page] = await make_report(
        settings,
        ReportRequest(year=YEAR, site=None, partner=None, format="html", out_dir=tmp_path),
    )
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for remote in ("https://", "<script", "<link", "<img"):
        assert remote not in html
    dom, shot = await asyncio.to_thread(render_in_chromium, browser, page, tmp_path)
    assert dom.count('<svg class="chart"') >= 3 + 2 * len(ACK_WITHIN)
    assert dom.count('class="bar"') > 50
    assert "Revue annuelle des partenariats PIMMS — 2026" in dom
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 1500)
    bars = sum(1 for p in pixels if p == bytes((0x1F, 0x6F, 0xB2)))
    assert bars > 5_000, "the charts' bars are not drawn"
    if os.environ.get("PIMMS_SAVE_SCREENSHOT"):
        target = Path(__file__).resolve().parents[4] / "docs" / "report-screenshot.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, target)
