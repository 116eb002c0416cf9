"""Report charts as inline SVG strings: no JavaScript, no fonts or files to fetch.

Three shapes cover the report page: lines over days (delivery against the pacing plan), points
with intervals (CTR by variant), and bars of a share (fill rate per placement). Every text that
reaches the SVG is escaped here: labels carry campaign and creative names, which are marketer
input. Colours come from CSS classes the page defines, so the charts follow its style.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH = 720
ROW = 26        # height of one row of an interval or bar chart
LABEL = 220     # width of the label column of row charts
PAD = 12


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]  # one per x label; None: no point
    style: str = "a"            # CSS class suffix: line-a, line-b, ...


def lines(title: str, labels: list[str], series: list[Series], unit: str = "") -> str:
    """Lines over ``labels`` (days), with a y axis from 0 to a round maximum and a legend."""
    height, left, bottom, top = 240, 64, 36, 28
    peak = _nice(max((v for s in series for v in s.values if v is not None), default=0.0))
    inner_w, inner_h = WIDTH - left - 3 * PAD, height - top - bottom  # room for the last day's label
    step = inner_w / max(len(labels) - 1, 1)

    def x(i: int) -> float:
        return left + i * step

    def y(v: float) -> float:
        return top + inner_h * (1 - v / peak)

    parts = [_axis_y(left, left + inner_w, peak, y, unit)]
    shown = range(0, len(labels), max(1, math.ceil(len(labels) / 8)))  # at most ~8 day labels
    parts += [f'<text class="tick" x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
              f'{escape(labels[i])}</text>' for i in shown]
    for s in series:
        points = [(x(i), y(v)) for i, v in enumerate(s.values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline class="line-{s.style}" fill="none" points="{path}"/>')
        parts += [f'<circle class="dot-{s.style}" cx="{px:.1f}" cy="{py:.1f}" r="3"/>' for px, py in points]
    legend, at = [], left
    for s in series:
        legend.append(f'<rect class="key-{s.style}" x="{at}" y="8" width="12" height="4"/>'
                      f'<text class="legend" x="{at + 16}" y="14">{escape(s.name)}</text>')
        at += 16 + 7 * len(s.name) + 24  # ~7 px a character at 12 px
    return _svg(title, height, parts + legend)
    return _svg(title, height, parts + legend)


def intervals(title: str, rows: list[tuple[str, float | None, float | None, float | None, str]],
              unit: str = "%") -> str:
    """One row per (label, value, low, high, note): a point on its interval, scaled to the widest."""
    peak = _nice(max((h for _, _, _, h, _ in rows if h is not None), default=0.0))
    scale, right = _scale(peak)
    parts = []
    for n, (label, value, low, high, note) in enumerate(rows):
        mid = PAD + 20 + n * ROW + ROW / 2
        parts.append(_label(label, mid))
        if value is not None:
            parts.append(f'<line class="interval" x1="{scale(low):.1f}" x2="{scale(high):.1f}" '
                         f'y1="{mid:.1f}" y2="{mid:.1f}"/>'
                         f'<circle class="dot-a" cx="{scale(value):.1f}" cy="{mid:.1f}" r="4"/>')
        parts.append(f'<text class="note" x="{right + 8}" y="{mid + 4:.1f}">{escape(note)}</text>')
    height = PAD * 2 + 20 + len(rows) * ROW + 20
    parts.append(_axis_x(scale, peak, height - PAD - 6, unit))
    return _svg(title, height, parts)


def bars(title: str, rows: list[tuple[str, float | None, str]]) -> str:
    """One bar per (label, share 0-1, note)."""
    scale, right = _scale(1.0)
    parts = []
    for n, (label, share, note) in enumerate(rows):
        mid = PAD + 20 + n * ROW + ROW / 2
        parts.append(_label(label, mid))
        if share is not None:
            parts.append(f'<rect class="bar" x="{scale(0):.1f}" y="{mid - 8:.1f}" '
                         f'width="{scale(share) - scale(0):.1f}" height="16"/>')
        parts.append(f'<text class="note" x="{right + 8}" y="{mid + 4:.1f}">{escape(note)}</text>')
    height = PAD * 2 + 20 + len(rows) * ROW + 20
    parts.append(_axis_x(scale, 1.0, height - PAD - 6, "%"))
    return _svg(title, height, parts)


def _svg(title: str, height: int, parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
            f'height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            + "".join(parts) + "</svg>")


def _scale(peak: float):
    """The x mapping of row charts: labels on the left, notes on the right."""
    left, right = LABEL, WIDTH - 170
    return (lambda v: left + (right - left) * (v / peak if peak else 0.0)), right


def _label(text: str, mid: float) -> str:
    short = text if len(text) <= 32 else text[:31] + "…"
    return f'<text class="label" x="{LABEL - 8}" y="{mid + 4:.1f}" text-anchor="end">{escape(short)}</text>'


def _axis_x(scale, peak: float, y: float, unit: str) -> str:
    ticks = [peak * k / 4 for k in range(5)]
    return "".join(f'<line class="grid" x1="{scale(t):.1f}" x2="{scale(t):.1f}" y1="{PAD + 16}" y2="{y - 12}"/>'
                   f'<text class="tick" x="{scale(t):.1f}" y="{y}" text-anchor="middle">{_fmt(t, unit)}</text>'
                   for t in ticks)


def _axis_y(left: float, right: float, peak: float, y, unit: str) -> str:
    return "".join(f'<line class="grid" x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                   f'<text class="tick" x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{_fmt(t, unit)}</text>'
                   for t in (peak * k / 4 for k in range(5)))


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"
    if value >= 10_000:
        return f"{value / 1000:,.0f}k{unit}"
    return f"{value:,.0f}{unit}" if value >= 10 or value == 0 else f"{value:,.1f}{unit}"


def _nice(peak: float) -> float:
    """A round axis maximum at or above ``peak`` (1, 1.2, 1.6, 2, ... 8 times a power of ten:
    each divides into four ticks that read well)."""
    if peak <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(peak))
    return next(m * power for m in (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10) if m * power >= peak * (1 - 1e-9))
