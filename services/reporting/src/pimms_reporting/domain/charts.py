"""Small charts as inline SVG text: nothing to load, nothing to install, same bytes every time."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pimms_reporting.domain.figures import Value

BAR = "#1f6fb2"
MUTED = "#9aa5b1"
INK = "#1b1f24"


def _number(value: float) -> str:
    """A coordinate with at most one decimal (stable text)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _label(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}".replace(".", ",")
    return str(value)


def column_chart(
    *, title: str, labels: Sequence[str], values: Sequence[Value], width: int = 560
) -> str:
    """Vertical bars, one per label (a value that is not a number, like "< 5", gets no bar)."""
    height, top, bottom, left = 220, 34, 28, 8
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    peak = max(numbers, default=0.0) or 1.0
    slot = (width - 2 * left) / max(len(labels), 1)
    plot = height - top - bottom
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<text x="{left}" y="18" font-size="14" font-weight="600" fill="{INK}">'
        f"{escape(title)}</text>",
        f'<line x1="{left}" y1="{top + plot}" x2="{width - left}" y2="{top + plot}" '
        f'stroke="{MUTED}"/>',
    ]
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + index * slot
        centre = x + slot / 2
        if isinstance(value, int | float) and value > 0:
            bar = plot * float(value) / peak
            parts.append(
                f'<rect class="bar" x="{_number(x + slot * 0.15)}" '
                f'y="{_number(top + plot - bar)}" width="{_number(slot * 0.7)}" '
                f'height="{_number(bar)}" fill="{BAR}"><title>{escape(label)} : '
                f"{escape(_label(value))}</title></rect>"
            )
            y = top + plot - bar - 4
        else:
            y = top + plot - 4
        parts.append(
            f'<text x="{_number(centre)}" y="{_number(y)}" font-size="11" '
            f'text-anchor="middle" fill="{INK}">{escape(_label(value))}</text>'
        )
        parts.append(
            f'<text x="{_number(centre)}" y="{height - 10}" font-size="11" '
            f'text-anchor="middle" fill="{INK}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    *, title: str, labels: Sequence[str], values: Sequence[Value], width: int = 560
) -> str:
    """Horizontal bars, one line per label."""
    line, top, label_width = 22, 34, 230
    height = top + line * len(labels) + 8
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    peak = max(numbers, default=0.0) or 1.0
    room = width - label_width - 60
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<text x="8" y="18" font-size="14" font-weight="600" fill="{INK}">{escape(title)}</text>',
    ]
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + index * line
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 15}" font-size="12" text-anchor="end" '
            f'fill="{INK}">{escape(label)}</text>'
        )
        length = room * float(value) / peak if isinstance(value, int | float) else 0.0
        if length > 0:
            parts.append(
                f'<rect class="bar" x="{label_width}" y="{y + 4}" width="{_number(length)}" '
                f'height="{line - 8}" fill="{BAR}"><title>{escape(label)} : '
                f"{escape(_label(value))}</title></rect>"
            )
        parts.append(
            f'<text x="{_number(label_width + length + 6)}" y="{y + 15}" font-size="12" '
            f'fill="{INK}">{escape(_label(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
