"""The review as CSV (French spreadsheet conventions) and as JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping

from pimms_reporting.domain.figures import ALL, FIGURES, TAGS, YEAR, Figure, Review, Value

BOM = "\ufeff"


def french_number(value: Value, figure: Figure) -> str:
    """A value as a French reader writes it: decimal comma, nothing when there is no value."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if figure.kind == "count":
        return str(int(value))
    decimals = 2 if figure.kind == "rating" else 1
    return f"{value:.{decimals}f}".replace(".", ",")


def site_label(site: str) -> str:
    """`*` is every site."""
    return "Tous les sites" if site == ALL else site


def partner_label(partner: str, names: Mapping[str, str]) -> str:
    """The operator's name when the directory knows it; `*` is every partner."""
    if partner == ALL:
        return "Tous les partenaires"
    return names.get(partner, partner)


def period_label(period: str, year: int) -> str:
    """`2026-03`, or `Année 2026` for the whole year."""
    return f"Année {year}" if period == YEAR else f"{year}-{period}"


def review_csv(review: Review, *, partner_names: Mapping[str, str]) -> bytes:
    """One row per site x partner x period, one column per figure; `;`, decimal comma, BOM."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Site", "Partenaire", "Période", *(f.fr for f in FIGURES)])
    for row in review.rows:
        writer.writerow(
            [
                site_label(row.site),
                partner_label(row.partner, partner_names),
                period_label(row.period, review.year),
                *(french_number(row.values[f.key], f) for f in FIGURES),
            ]
        )
    return (BOM + out.getvalue()).encode("utf-8")


def comments_csv(review: Review, *, partner_names: Mapping[str, str]) -> bytes:
    """The mediators' comments (network's internal report only), same conventions."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Site", "Partenaire", "Mois", "Note", "Étiquettes", "Commentaire"])
    for c in review.comments:
        writer.writerow(
            [
                c.site_id,
                partner_label(c.partner_id, partner_names),
                f"{review.year}-{c.month}",
                str(c.rating),
                ", ".join(TAGS[t][0] if t in TAGS else t for t in c.tags),
                c.text,
            ]
        )
    return (BOM + out.getvalue()).encode("utf-8")


def review_json(review: Review) -> bytes:
    """The review as JSON: figure definitions, rows (values as numbers or "< 5"), comments."""
    document = {
        "year": review.year,
        "audience": review.audience,
        "site": review.site,
        "partner": review.partner,
        "figures": [
            {"key": f.key, "label_fr": f.fr, "label_en": f.en, "kind": f.kind} for f in FIGURES
        ],
        "rows": [
            {"site": r.site, "partner": r.partner, "period": r.period, "values": dict(r.values)}
            for r in review.rows
        ],
        "comments": [
            {
                "site": c.site_id,
                "partner": c.partner_id,
                "month": f"{review.year}-{c.month}",
                "rating": c.rating,
                "tags": list(c.tags),
                "comment": c.text,
            }
            for c in review.comments
        ],
    }
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
