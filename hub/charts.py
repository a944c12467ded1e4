"""Charts as inline SVG, rendered on the server (no JavaScript, no library, no network): the
dashboard's ratings per day by level, ratings by level, and rates against a target.

Pure functions from figures to SVG text. Every label is XML-escaped here; the result is markup to
put in a page as it is (Jinja2: `|safe` or `Markup`). Each chart is `role="img"` with an
`aria-label` that says what it shows, and every bar has a `<title>` with its exact figure (a
tooltip, and what a screen reader reads); the pages also show the figures as a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from hcp.protocol import LEVELS

# Level colours, 5 (非常满意) to 1 (非常不满意): dark enough for white text, told apart by lightness
# as well as hue (the legend and the tables name them too, so colour is never the only cue).
LEVEL_COLOURS = {5: "#1a7f37", 4: "#4d8f1f", 3: "#9a6700", 2: "#c4432b", 1: "#82071e"}
TARGET_COLOUR = "#0550ae"
BELOW_COLOUR = "#c4432b"
ABOVE_COLOUR = "#1a7f37"
NONE_COLOUR = "#6e7781"
FONT = "font-family=\"system-ui, sans-serif\" font-size=\"12\""


def _x(text: object) -> str:
    return escape(str(text), quote=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def axis(value: int, ticks: int = 4) -> tuple[int, int]:
    """(top, step) of an axis from 0 that holds `value` in `ticks` equal whole steps, each step a
    round number (1, 2, 5, 10, 20, 50, …)."""
    needed = max(-(-value // ticks), 1)
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= needed:
                return step * m * ticks, step * m
        step *= 10


def _svg(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_x(title)}" class="chart" {FONT}>',
            f"<title>{_x(title)}</title>"]


@dataclass(frozen=True)
class Day:
    """One bar of `ratings_by_day`: its label (a day), and its ratings per score 1..5."""

    label: str
    scores: Sequence[int]  # score 1 .. score 5


def ratings_by_day(days: Sequence[Day], *, title: str, width: int = 720, height: int = 220) -> str:
    """Stacked bars, one per day, of its ratings by level (非常满意 on top of the stack's base…)."""
    left, right, top, bottom = 44, 8, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak, step = axis(max((sum(d.scores) for d in days), default=0))
    parts = _svg(width, height, title)
    for i in range(5):  # grid lines and the axis' figures
        value = step * i
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d7de"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#424a53">{value}</text>')
    n = max(len(days), 1)
    slot = plot_w / n
    bar = max(slot * 0.7, 1.0)
    label_every = max(1, round(n / 12))
    for i, d in enumerate(days):
        x = left + slot * i + (slot - bar) / 2
        y = top + plot_h
        total = sum(d.scores)
        for score in (1, 2, 3, 4, 5):
            count = d.scores[score - 1]
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{LEVEL_COLOURS[score]}"><title>{_x(d.label)} {_x(LEVELS[score])}: '
                         f'{count}</title></rect>')
        if total == 0:
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - 1:.1f}" width="{bar:.1f}" height="1" '
                         f'fill="{NONE_COLOUR}"><title>{_x(d.label)}: 0</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                         f'fill="#424a53">{_x(d.label[-5:] if len(d.label) == 10 else d.label)}</text>')
    parts.append(_legend(left, height - 6))
    parts.append("</svg>")
    return "".join(parts)


def _legend(x: float, y: float) -> str:
    items = []
    for score in (5, 4, 3, 2, 1):
        items.append(f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" fill="{LEVEL_COLOURS[score]}"/>'
                     f'<text x="{x + 13:.0f}" y="{y:.0f}" fill="#24292f">{_x(LEVELS[score])}</text>')
        x += 13 + 14 * len(LEVELS[score]) + 12
    return "".join(items)


def ratings_by_level(scores: Sequence[int], *, title: str, width: int = 360) -> str:
    """Horizontal bars, one per level from 非常满意 to 非常不满意, with count and share."""
    row, left, right = 26, 84, 96
    height = row * 5 + 8
    total = sum(scores)
    peak = max(max(scores, default=0), 1)
    plot_w = width - left - right
    parts = _svg(width, height, title)
    for i, score in enumerate((5, 4, 3, 2, 1)):
        count = scores[score - 1]
        y = 4 + i * row
        w = plot_w * count / peak
        share = count / total if total else None
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" fill="#24292f">{_x(LEVELS[score])}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="16" '
                     f'fill="{LEVEL_COLOURS[score] if count else NONE_COLOUR}"><title>{_x(LEVELS[score])}: '
                     f'{count} ({_pct(share)})</title></rect>')
        parts.append(f'<text x="{left + max(w, 1) + 4:.1f}" y="{y + 15}" fill="#24292f">{count} '
                     f'({_pct(share)})</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Rate:
    """One bar of `rates`: a label, the rate (None: nothing to rate) and what it is out of."""

    label: str
    value: float | None
    of: int


def rates(bars: Sequence[Rate], *, title: str, target: float, width: int = 480) -> str:
    """Horizontal bars of a rate from 0 to 100%, with the target as a vertical line; a bar below
    the target is drawn in the warning colour (and its title says so)."""
    row, left, right = 24, 120, 120
    height = row * max(len(bars), 1) + 24
    plot_w = width - left - right
    tx = left + plot_w * target
    parts = _svg(width, height, title)
    for i, b in enumerate(bars):
        y = 4 + i * row
        label = b.label if len(b.label) <= 16 else b.label[:15] + "…"
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" fill="#24292f">{_x(label)}</text>')
        if b.value is None:
            parts.append(f'<text x="{left}" y="{y + 14}" fill="{NONE_COLOUR}">–</text>')
            continue
        below = b.value < target
        w = plot_w * min(max(b.value, 0.0), 1.0)
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="15" '
                     f'fill="{BELOW_COLOUR if below else ABOVE_COLOUR}"><title>{_x(b.label)}: '
                     f'{_pct(b.value)} of {b.of}{" – below target" if below else ""}</title></rect>')
        parts.append(f'<text x="{left + plot_w + 6}" y="{y + 14}" fill="#24292f">{_pct(b.value)}'
                     f'{" ▼" if below else ""}</text>')
    bottom = height - 18
    parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="0" y2="{bottom}" stroke="{TARGET_COLOUR}" '
                 f'stroke-width="2" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{tx:.1f}" y="{height - 4}" text-anchor="middle" fill="{TARGET_COLOUR}">'
                 f'{_pct(target)}</text>')
    parts.append("</svg>")
    return "".join(parts)
