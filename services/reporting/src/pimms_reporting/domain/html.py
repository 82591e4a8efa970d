"""The review as one self-contained HTML page: French first, a section per partner, inline SVG.

Nothing is loaded at view time (no script, no font, no image from the network), and the page
holds no date of generation: the same facts give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from pimms_reporting.domain.charts import bar_chart, column_chart
from pimms_reporting.domain.figures import (
    ALL,
    FIGURES,
    FIGURES_BY_KEY,
    PERIODS,
    TAGS,
    YEAR,
    Review,
    Value,
)
from pimms_reporting.domain.formats import french_number, partner_label, site_label

MONTHS = (
    "janv.",
    "févr.",
    "mars",
    "avr.",
    "mai",
    "juin",
    "juil.",
    "août",
    "sept.",
    "oct.",
    "nov.",
    "déc.",
)
OUTCOME_KEYS = (
    "outcome.resolved",
    "outcome.not_resolved",
    "outcome.visitor_unreachable",
    "outcome.rejected.out_of_scope",
    "outcome.rejected.duplicate",
    "outcome.rejected.incomplete",
    "outcome.rejected.other",
    "outcome.expired",
    "outcome.cancelled",
    "outcome.delivery_failed",
)
MONTHLY_KEYS = (
    "needs",
    "referrals",
    "ack.median_h",
    "ack.p90_h",
    "resolve.median_h",
    "resolve.p90_h",
    "outcome.resolved",
    "sla.reminders",
    "sla.escalations",
    "sla.expiries",
    "assessments.mean_rating",
)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;
background:#f6f7f9}
header,section,footer{max-width:1180px;margin:0 auto;padding:16px 24px}
header{background:#10395e;color:#fff;max-width:none}
header h1{margin:8px 0 4px;font-size:26px}
.en{color:#5b6670;font-size:.85em;font-style:italic}
header .en{color:#c9d8e6}
section{background:#fff;margin:18px auto;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{border-bottom:2px solid #1f6fb2;padding-bottom:4px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
table{border-collapse:collapse;font-size:13px;margin:12px 0;width:100%}
th,td{border-bottom:1px solid #e3e6ea;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#eef3f8;position:sticky;top:0}
blockquote{margin:8px 0;padding:6px 12px;border-left:3px solid #1f6fb2;background:#f6f9fc}
nav a{color:#fff;margin-right:14px}
.scope{font-size:15px}
"""


def review_html(review: Review, *, partner_names: Mapping[str, str]) -> str:
    """The whole page."""
    title = f"Revue annuelle des partenariats PIMMS — {review.year}"
    partners = [p for p in review.partners if p != ALL]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="fr">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="en" lang="en">PIMMS yearly partnership review — {review.year}</p>',
        f'<p class="scope">{escape(_scope(review, partner_names))}</p>',
        "<nav>",
        *(
            f'<a href="#partenaire-{escape(p)}">{escape(partner_label(p, partner_names))}</a>'
            for p in partners
        ),
        "</nav>",
        "</header>",
    ]
    if review.audience == "internal" and ALL in review.partners:
        parts.append(_network_section(review))
    for partner in partners:
        parts.append(_partner_section(review, partner, partner_names))
    parts.append(_method())
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _scope(review: Review, names: Mapping[str, str]) -> str:
    where = f"site {review.site}" if review.site else "tous les sites"
    if review.audience == "partner":
        return (
            f"Rapport destiné à {partner_label(review.partner or '', names)} ({where}). "
            "Les effectifs inférieurs à 5 sont indiqués « < 5 »."
        )
    return f"Rapport interne du réseau PIMMS ({where}), avec les commentaires des médiateurs."


def _value(review: Review, site: str, partner: str, period: str, key: str) -> Value:
    row = review.row(site, partner, period)
    return row.values[key] if row is not None else None


def _top_site(review: Review) -> str:
    return ALL if ALL in review.sites else (review.sites[0] if review.sites else ALL)


def _network_section(review: Review) -> str:
    site = _top_site(review)
    needs = [_value(review, site, ALL, p, "needs") for p in PERIODS[:-1]]
    categories = [f for f in FIGURES if f.key.startswith("needs.category.")]
    channels = [f for f in FIGURES if f.key.startswith("needs.channel.")]
    return "\n".join(
        [
            '<section id="reseau">',
            '<h2>Ensemble du réseau <span class="en" lang="en">Whole network</span></h2>',
            '<div class="charts">',
            column_chart(title="Besoins par mois", labels=MONTHS, values=needs),
            bar_chart(
                title="Besoins par catégorie (année)",
                labels=[f.fr.removeprefix("Besoins : ") for f in categories],
                values=[_value(review, site, ALL, YEAR, f.key) for f in categories],
            ),
            bar_chart(
                title="Besoins par canal (année)",
                labels=[f.fr.removeprefix("Besoins : ") for f in channels],
                values=[_value(review, site, ALL, YEAR, f.key) for f in channels],
            ),
            "</div>",
            _year_table(review, ALL, {}),
            "</section>",
        ]
    )


def _partner_section(review: Review, partner: str, names: Mapping[str, str]) -> str:
    site = _top_site(review)
    name = partner_label(partner, names)
    referrals = [_value(review, site, partner, p, "referrals") for p in PERIODS[:-1]]
    outcomes = [FIGURES_BY_KEY[k] for k in OUTCOME_KEYS]
    parts = [
        f'<section id="partenaire-{escape(partner)}" class="partner">',
        f'<h2>{escape(name)} <span class="en">{escape(partner)}</span></h2>',
        '<div class="charts">',
        column_chart(title=f"Orientations vers {name} par mois", labels=MONTHS, values=referrals),
        bar_chart(
            title="Issues des orientations (année)",
            labels=[f.fr.removeprefix("Issue : ") for f in outcomes],
            values=[_value(review, site, partner, YEAR, f.key) for f in outcomes],
        ),
        "</div>",
        _year_table(review, partner, names),
        _monthly_table(review, site, partner),
    ]
    comments = [c for c in review.comments if c.partner_id == partner]
    if comments:
        parts.append(
            '<h3>Commentaires des médiateurs <span class="en" lang="en">Mediators\' '
            "comments (internal)</span></h3>"
        )
        for c in comments:
            tags = ", ".join(TAGS[t][0] if t in TAGS else t for t in c.tags)
            parts.append(
                f"<blockquote><strong>{escape(c.site_id)}, {review.year}-{c.month}, "
                f"note {c.rating}/5</strong>{' — ' + escape(tags) if tags else ''}<br>"
                f"{escape(c.text)}</blockquote>"
            )
    parts.append("</section>")
    return "\n".join(parts)


def _year_table(review: Review, partner: str, names: Mapping[str, str]) -> str:
    sites = [s for s in review.sites if review.row(s, partner, YEAR) is not None]
    head = "".join(f"<th>{escape(site_label(s))}</th>" for s in sites)
    lines = [
        f'<h3>L\'année {review.year} par site <span class="en" lang="en">The year by site'
        "</span></h3>",
        f"<table><thead><tr><th>Indicateur</th>{head}</tr></thead><tbody>",
    ]
    for figure in FIGURES:
        values = [_value(review, s, partner, YEAR, figure.key) for s in sites]
        cells = "".join(f"<td>{escape(french_number(v, figure))}</td>" for v in values)
        lines.append(
            f'<tr><td>{escape(figure.fr)} <span class="en" lang="en">{escape(figure.en)}</span>'
            f"</td>{cells}</tr>"
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _monthly_table(review: Review, site: str, partner: str) -> str:
    figures = [FIGURES_BY_KEY[k] for k in MONTHLY_KEYS]
    head = "".join(f"<th>{escape(f.fr)}</th>" for f in figures)
    lines = [
        f"<h3>Mois par mois ({escape(site_label(site))}) "
        '<span class="en" lang="en">Month by month</span></h3>',
        f"<table><thead><tr><th>Mois</th>{head}</tr></thead><tbody>",
    ]
    for period, month in zip(PERIODS[:-1], MONTHS, strict=True):
        cells = "".join(
            f"<td>{escape(french_number(_value(review, site, partner, period, f.key), f))}</td>"
            for f in figures
        )
        lines.append(f"<tr><td>{month}</td>{cells}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


METHOD: Sequence[str] = (
    "Chaque fait compte dans le mois (heure de Paris) où il a lieu : un besoin à l'ouverture du "
    "dossier, une orientation à sa demande, un délai d'accusé de réception à la première "
    "réponse du partenaire, une issue et un délai de traitement à la fin de l'orientation.",
    "Délai d'accusé de réception : de la transmission au partenaire à sa première réponse, "
    "quelle qu'elle soit. Délai de traitement : de la transmission à sa réponse finale (résolu, "
    "non résolu, visiteur injoignable ou refus). Médiane et 90e centile au rang le plus proche, "
    "en heures.",
    "Relances : rappels envoyés au partenaire resté sans réponse ; escalades : signalements au "
    "médiateur à deux fois le délai ; expirations : pas de réponse finale dans le délai convenu.",
    "Naturalisation : dossiers retenus avant transmission faute des pièces de la liste de la "
    "préfecture, puis libérés quand elles sont apportées ; un dossier est complet à la première "
    "transmission quand la préfecture n'a ensuite demandé aucune pièce.",
    "Un besoin compte pour chaque partenaire vers lequel il a été orienté, et une fois pour "
    "« Tous les partenaires ». Aucune donnée personnelle ne figure dans ce rapport.",
)


def _method() -> str:
    items = "".join(f"<li>{escape(line)}</li>" for line in METHOD)
    return (
        '<footer><h2>Méthode <span class="en" lang="en">Method</span></h2>'
        f"<ul>{items}</ul></footer>"
    )
