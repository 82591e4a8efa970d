"""The review's figures per site x partner x month and for the year, from the activity facts.

Every fact counts in the month (Paris time) of the moment it describes: a need when its case
opened, a referral when it was asked for, a time to acknowledge when the partner first answered,
an outcome and a time to resolve when the referral ended, a reminder or an escalation when it was
sent, a notification when it went out or failed, an assessment when the mediator made it.

Rows: each site and `*` (all sites) x each partner and `*` (all partners) x each month and the
year. A need counts once for `*` and once for each partner its case was referred to; a case that
no partner serves counts only for `*`; a notification about the case as a whole (not about one
referral) counts only for `*`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pimms_reporting.domain.facts import Facts

PARIS = ZoneInfo("Europe/Paris")
ALL = "*"
YEAR = "year"
NATURALISATION = "naturalisation"
SMALL = 5  # in a partner's report, a figure based on fewer items is shown as "< 5"
UNKNOWN_SITE = "inconnu"

Kind = Literal["count", "hours", "rating", "percent"]
Audience = Literal["internal", "partner"]

CATEGORIES = {
    "energy_bill": ("facture d'énergie", "energy bill"),
    "water_bill": ("facture d'eau", "water bill"),
    "postal_service": ("services postaux", "postal service"),
    "rail_travel": ("transport ferroviaire", "rail travel"),
    "telecom": ("télécommunications", "telecom"),
    "naturalisation": ("naturalisation", "naturalisation"),
    "housing_rights": ("droits au logement", "housing rights"),
    "health_insurance": ("assurance maladie", "health insurance"),
    "family_benefits": ("prestations familiales", "family benefits"),
    "banking": ("banque", "banking"),
    "micro_credit": ("microcrédit", "micro-credit"),
    "other": ("autre", "other"),
}
CHANNELS = {
    "front_desk": ("accueil", "front desk"),
    "outreach": ("aller-vers", "outreach"),
    "phone": ("téléphone", "phone"),
    "online": ("en ligne", "online"),
    "unknown": ("canal non renseigné", "channel not given"),
}
REJECTION_REASONS = {
    "out_of_scope": ("hors périmètre", "out of scope"),
    "duplicate": ("doublon", "duplicate"),
    "incomplete": ("incomplet", "incomplete"),
    "other": ("autre motif", "other reason"),
}
NOTIFICATION_CHANNELS = {
    "sms": ("SMS", "SMS"),
    "email": ("e-mail", "e-mail"),
    "mediator_inbox": ("boîte du médiateur", "mediator inbox"),
}
TAGS = {
    "fast": ("rapide", "fast"),
    "slow": ("lent", "slow"),
    "clear_answer": ("réponse claire", "clear answer"),
    "unclear_answer": ("réponse peu claire", "unclear answer"),
    "unreachable_partner": ("partenaire injoignable", "unreachable partner"),
    "wrong_partner": ("mauvais partenaire", "wrong partner"),
    "visitor_satisfied": ("visiteur satisfait", "visitor satisfied"),
    "visitor_unsatisfied": ("visiteur insatisfait", "visitor unsatisfied"),
}


@dataclass(frozen=True)
class Figure:
    """One column of the review: its key, French and English labels, and what it measures."""

    key: str
    fr: str
    en: str
    kind: Kind = "count"
    basis: str | None = None  # the count a statistic is computed from (small-count rule)


def _catalogue() -> tuple[Figure, ...]:
    figures = [Figure("needs", "Besoins", "Needs")]
    figures += [
        Figure(f"needs.category.{code}", f"Besoins : {fr}", f"Needs: {en}")
        for code, (fr, en) in CATEGORIES.items()
    ]
    figures += [
        Figure(f"needs.channel.{code}", f"Besoins : {fr}", f"Needs: {en}")
        for code, (fr, en) in CHANNELS.items()
    ]
    figures += [
        Figure("referrals", "Orientations vers un partenaire", "Referrals"),
        Figure("ack.count", "Accusés de réception mesurés", "Acknowledgements measured"),
        Figure(
            "ack.median_h",
            "Délai d'accusé de réception, médiane (h)",
            "Time to acknowledge, median (h)",
            "hours",
            "ack.count",
        ),
        Figure(
            "ack.p90_h",
            "Délai d'accusé de réception, 90e centile (h)",
            "Time to acknowledge, p90 (h)",
            "hours",
            "ack.count",
        ),
        Figure("resolve.count", "Réponses finales mesurées", "Final answers measured"),
        Figure(
            "resolve.median_h",
            "Délai de traitement, médiane (h)",
            "Time to resolve, median (h)",
            "hours",
            "resolve.count",
        ),
        Figure(
            "resolve.p90_h",
            "Délai de traitement, 90e centile (h)",
            "Time to resolve, p90 (h)",
            "hours",
            "resolve.count",
        ),
        Figure("outcome.resolved", "Issue : résolu", "Outcome: resolved"),
        Figure("outcome.not_resolved", "Issue : non résolu", "Outcome: not resolved"),
        Figure(
            "outcome.visitor_unreachable",
            "Issue : visiteur injoignable",
            "Outcome: visitor unreachable",
        ),
    ]
    figures += [
        Figure(f"outcome.rejected.{code}", f"Issue : refusé ({fr})", f"Outcome: rejected ({en})")
        for code, (fr, en) in REJECTION_REASONS.items()
    ]
    figures += [
        Figure("outcome.expired", "Issue : expiré", "Outcome: expired"),
        Figure("outcome.cancelled", "Issue : annulé", "Outcome: cancelled"),
        Figure("outcome.delivery_failed", "Issue : échec d'envoi", "Outcome: delivery failed"),
        Figure("sla.reminders", "Relances du partenaire", "Reminders sent to the partner"),
        Figure("sla.escalations", "Escalades au médiateur", "Escalations to the mediator"),
        Figure("sla.expiries", "Expirations (délai dépassé)", "Expiries"),
        Figure(
            "naturalisation.held",
            "Naturalisation : dossiers retenus (pièces manquantes)",
            "Naturalisation: files held (missing documents)",
        ),
        Figure(
            "naturalisation.released",
            "Naturalisation : dossiers libérés",
            "Naturalisation: files released",
        ),
        Figure(
            "naturalisation.transmitted",
            "Naturalisation : dossiers transmis",
            "Naturalisation: files transmitted",
        ),
        Figure(
            "naturalisation.complete",
            "Naturalisation : complets à la première transmission",
            "Naturalisation: complete at first transmission",
        ),
        Figure(
            "naturalisation.complete_pct",
            "Naturalisation : part des dossiers complets (%)",
            "Naturalisation: share complete (%)",
            "percent",
            "naturalisation.transmitted",
        ),
    ]
    figures += [
        Figure(f"notifications.sent.{code}", f"Notifications envoyées : {fr}", f"Sent: {en}")
        for code, (fr, en) in NOTIFICATION_CHANNELS.items()
    ]
    figures += [
        Figure(f"notifications.failed.{code}", f"Notifications en échec : {fr}", f"Failed: {en}")
        for code, (fr, en) in NOTIFICATION_CHANNELS.items()
    ]
    figures += [
        Figure(
            "notifications.failed.none",
            "Notifications en échec : aucun canal joignable",
            "Failed: no reachable channel",
        ),
        Figure("assessments.count", "Évaluations des médiateurs", "Mediators' assessments"),
        Figure(
            "assessments.mean_rating",
            "Note moyenne (sur 5)",
            "Mean rating (out of 5)",
            "rating",
            "assessments.count",
        ),
    ]
    figures += [
        Figure(f"assessments.tag.{code}", f"Étiquette : {fr}", f"Tag: {en}")
        for code, (fr, en) in TAGS.items()
    ]
    return tuple(figures)


FIGURES: tuple[Figure, ...] = _catalogue()
FIGURES_BY_KEY: Mapping[str, Figure] = {f.key: f for f in FIGURES}

Value = int | float | str | None


@dataclass
class Cell:
    """What is counted for one site x partner x period."""

    counts: Counter[str] = field(default_factory=Counter)
    ack: list[float] = field(default_factory=list)
    resolve: list[float] = field(default_factory=list)
    ratings: list[int] = field(default_factory=list)

    def values(self) -> dict[str, Value]:
        """Every figure of the catalogue, in its order (None when there is nothing to compute)."""
        counts = self.counts
        stats: dict[str, Value] = {
            "ack.count": len(self.ack),
            "ack.median_h": hours(percentile(self.ack, 0.5)),
            "ack.p90_h": hours(percentile(self.ack, 0.9)),
            "resolve.count": len(self.resolve),
            "resolve.median_h": hours(percentile(self.resolve, 0.5)),
            "resolve.p90_h": hours(percentile(self.resolve, 0.9)),
            "naturalisation.complete_pct": share(
                counts["naturalisation.complete"], counts["naturalisation.transmitted"]
            ),
            "assessments.count": len(self.ratings),
            "assessments.mean_rating": mean(self.ratings),
        }
        return {f.key: stats[f.key] if f.key in stats else counts[f.key] for f in FIGURES}


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least p of the values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(p * len(ordered)), 1) - 1]


def hours(seconds: float | None) -> float | None:
    """Seconds as hours, one decimal."""
    return None if seconds is None else round(seconds / 3600, 1)


def share(part: int, whole: int) -> float | None:
    """A percentage, one decimal."""
    return None if whole == 0 else round(100 * part / whole, 1)


def mean(values: list[int]) -> float | None:
    """The mean, two decimals."""
    return None if not values else round(sum(values) / len(values), 2)


def month_of(at: datetime) -> tuple[int, int]:
    """(year, month) in Paris time."""
    local = at.astimezone(PARIS)
    return local.year, local.month


Key = tuple[str, str, str]  # site, partner, period ("01".."12" or "year")


@dataclass(frozen=True)
class Comment:
    """A mediator's comment (internal report only)."""

    site_id: str
    partner_id: str
    month: str
    rating: int
    tags: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Row:
    """One line of the review."""

    site: str
    partner: str
    period: str
    values: Mapping[str, Value]


@dataclass(frozen=True)
class Review:
    """The review of one year, for the network (internal) or for one partner."""

    year: int
    audience: Audience
    site: str | None
    partner: str | None
    rows: tuple[Row, ...]
    comments: tuple[Comment, ...]

    def row(self, site: str, partner: str, period: str) -> Row | None:
        """The row of a site x partner x period, if the review has it."""
        for row in self.rows:
            if (row.site, row.partner, row.period) == (site, partner, period):
                return row
        return None

    @property
    def partners(self) -> tuple[str, ...]:
        """The partners with a row, `*` last."""
        return _ordered({r.partner for r in self.rows})

    @property
    def sites(self) -> tuple[str, ...]:
        """The sites with a row, `*` last."""
        return _ordered({r.site for r in self.rows})


class _Cells:
    """Cells of one year, filled fact by fact."""

    def __init__(self, year: int) -> None:
        self.year = year
        self.cells: defaultdict[Key, Cell] = defaultdict(Cell)

    def touching(self, site: str, partners: Iterable[str], at: datetime) -> Iterator[Cell]:
        """The cells a fact of this site, these partners and this moment counts in."""
        year, month = month_of(at)
        if year != self.year:
            return
        keys = {
            (s, p, period)
            for s in (site, ALL)
            for p in (*partners, ALL)
            for period in (f"{month:02d}", YEAR)
        }
        for key in sorted(keys):
            yield self.cells[key]

    def add(self, name: str, *, site: str, partners: Iterable[str], at: datetime | None) -> None:
        """Count one `name` at this site for these partners at this moment."""
        if at is None:
            return
        for cell in self.touching(site, partners, at):
            cell.counts[name] += 1


def compute_review(
    facts: Facts,
    *,
    year: int,
    site: str | None = None,
    partner: str | None = None,
) -> Review:
    """The review of `year`: for the network, or (`partner`) only that partner's figures with
    small counts hidden and no comments."""
    cells = _Cells(year)
    categories = {c.case_id: c.category for c in facts.cases}
    case_sites = {c.case_id: c.site_id for c in facts.cases}
    partners_of: defaultdict[str, set[str]] = defaultdict(set)
    partner_of_referral = {}
    for referral in facts.referrals:
        partners_of[referral.case_id].add(referral.partner_id)
        partner_of_referral[referral.referral_id] = referral.partner_id
        case_sites.setdefault(referral.case_id, referral.site_id)

    for case in facts.cases:
        targets = sorted(partners_of[case.case_id])
        where = {"site": case.site_id, "partners": targets, "at": case.opened_at}
        cells.add("needs", **where)  # type: ignore[arg-type]
        cells.add(f"needs.category.{case.category}", **where)  # type: ignore[arg-type]
        cells.add(f"needs.channel.{case.channel or 'unknown'}", **where)  # type: ignore[arg-type]

    for r in facts.referrals:
        one = (r.partner_id,)
        cells.add("referrals", site=r.site_id, partners=one, at=r.created_at)
        if (seconds := r.seconds_to_acknowledge) is not None and r.acknowledged_at is not None:
            for cell in cells.touching(r.site_id, one, r.acknowledged_at):
                cell.ack.append(seconds)
        if (seconds := r.seconds_to_resolve) is not None and r.final_at is not None:
            for cell in cells.touching(r.site_id, one, r.final_at):
                cell.resolve.append(seconds)
        if r.final_status is not None:
            cells.add(
                _outcome(r.final_status, r.final_code), site=r.site_id, partners=one, at=r.final_at
            )
        if r.final_status == "expired":
            cells.add("sla.expiries", site=r.site_id, partners=one, at=r.final_at)
        if categories.get(r.case_id) == NATURALISATION:
            cells.add("naturalisation.held", site=r.site_id, partners=one, at=r.held_at)
            cells.add("naturalisation.released", site=r.site_id, partners=one, at=r.released_at)
            at = r.transmitted_at
            cells.add("naturalisation.transmitted", site=r.site_id, partners=one, at=at)
            if not r.complement_requested:
                cells.add("naturalisation.complete", site=r.site_id, partners=one, at=at)

    for signal in facts.signals:
        name = "sla.reminders" if signal.kind == "reminder" else "sla.escalations"
        cells.add(name, site=signal.site_id, partners=(signal.partner_id,), at=signal.at)

    for n in facts.notifications:
        about = partner_of_referral.get(n.referral_id or "")
        outcome = "sent" if n.delivered else "failed"
        cells.add(
            f"notifications.{outcome}.{n.channel or 'none'}",
            site=case_sites.get(n.case_id, UNKNOWN_SITE),
            partners=(about,) if about else (),
            at=n.at,
        )

    comments: list[Comment] = []
    for a in facts.assessments:
        one = (a.partner_id,)
        for cell in cells.touching(a.site_id, one, a.assessed_at):
            cell.ratings.append(a.rating)
            for tag in a.tags:
                cell.counts[f"assessments.tag.{tag}"] += 1
        year_of, month = month_of(a.assessed_at)
        if a.comment and year_of == year:
            comments.append(
                Comment(a.site_id, a.partner_id, f"{month:02d}", a.rating, a.tags, a.comment)
            )

    audience: Audience = "partner" if partner is not None else "internal"
    rows = _rows(cells.cells, site=site, partner=partner, audience=audience)
    kept = [] if audience == "partner" else [c for c in comments if site in (None, c.site_id)]
    kept.sort(key=lambda c: (c.site_id, c.partner_id, c.month, c.rating, c.tags, c.text))
    return Review(year, audience, site, partner, tuple(rows), tuple(kept))


def _outcome(status: str, code: str | None) -> str:
    if status == "completed":
        return f"outcome.{code}"
    if status == "rejected":
        return f"outcome.rejected.{code if code in REJECTION_REASONS else 'other'}"
    return f"outcome.{status}"


PERIODS = (*(f"{m:02d}" for m in range(1, 13)), YEAR)


def _rows(
    cells: Mapping[Key, Cell], *, site: str | None, partner: str | None, audience: Audience
) -> list[Row]:
    pairs = {(s, p) for s, p, _ in cells}
    if site is not None:
        pairs = {(s, p) for s, p in pairs if s == site}
    if partner is not None:
        pairs = {(s, p) for s, p in pairs if p == partner}
    rows = []
    for s in _ordered({s for s, _ in pairs}):
        for p in _ordered({p for q, p in pairs if q == s}):
            for period in PERIODS:
                cell = cells.get((s, p, period)) or Cell()
                values = cell.values()
                if audience == "partner":
                    values = suppress_small(values)
                rows.append(Row(s, p, period, values))
    return rows


def suppress_small(values: Mapping[str, Value]) -> dict[str, Value]:
    """A partner's view: counts under 5, and figures computed from under 5 items, are "< 5"."""
    shown: dict[str, Value] = {}
    for figure in FIGURES:
        value = values[figure.key]
        if figure.kind == "count":
            small = isinstance(value, int) and value < SMALL
        else:
            basis = values[figure.basis or ""]
            small = isinstance(basis, int) and basis < SMALL
        shown[figure.key] = "< 5" if small else value
    return shown


def _ordered(names: set[str]) -> tuple[str, ...]:
    return tuple(sorted(names - {ALL})) + ((ALL,) if ALL in names else ())
