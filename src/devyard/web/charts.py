"""Small line charts as server-made SVG: the dashboard draws its usage charts without a script library or a CDN.

Written by hand because what a chart here needs is small (one series, a time axis, three
grid lines) and an SVG made on the server works offline, under the pages' Content-Security-Policy
(no inline script), and in an <img> with a text alternative. Colours follow the page's light or
dark scheme through a media query inside the SVG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 320, 120
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 16, 22
STYLE = (
    "<style>text{font:10px system-ui,sans-serif;fill:#555}.grid{stroke:#ddd}.line{stroke:#2456c9;fill:none;"
    "stroke-width:1.6}.area{fill:#2456c922}.dot,.bar{fill:#2456c9}@media (prefers-color-scheme:dark){text{fill:#bbb}.grid{stroke:#444}"
    ".line{stroke:#7aa2ff}.area{fill:#7aa2ff22}.dot,.bar{fill:#7aa2ff}}</style>"
)


def nice_top(value: float) -> float:
    """A round number at or above `value` for the top of an axis (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


Frame = tuple[list[str], Callable[[datetime], float], Callable[[float], float], float]


def _frame(
    title: str,
    points: Sequence[tuple[datetime, float]],
    start: datetime,
    end: datetime,
    label: Callable[[float], str],
    time_format: str,
) -> Frame:
    """The SVG's opening, title, grid and time labels; with the x and y scales and the base line's y."""
    span = max((end - start).total_seconds(), 1.0)
    top = nice_top(max((v for _, v in points), default=0.0))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + inner_w * min(max((at - start).total_seconds() / span, 0.0), 1.0)

    def y(value: float) -> float:
        return TOP + inner_h * (1 - min(value / top, 1.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">',
        f"<title>{escape(title)}</title>",
        STYLE,
        f'<text x="{LEFT}" y="11">{escape(title)}</text>',
    ]
    for share in (0.0, 0.5, 1.0):
        gy = y(top * share)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{gy + 3:.1f}" text-anchor="end">{escape(label(top * share))}</text>')
    for at, anchor in ((start, "start"), (end, "end")):
        parts.append(
            f'<text x="{x(at):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">{escape(at.strftime(time_format))}</text>'
        )
    return parts, x, y, TOP + inner_h


def line_chart(
    title: str,
    points: Sequence[tuple[datetime, float]],
    start: datetime,
    end: datetime,
    label: Callable[[float], str],
    time_format: str = "%H:%M",
) -> str:
    """An SVG line chart of `points` between `start` and `end`, its y axis labelled by `label`; a note when empty."""
    parts, x, y, base = _frame(title, points, start, end, label, time_format)
    if len(points) > 1:
        line = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v in points)
        first, last = x(points[0][0]), x(points[-1][0])
        parts.append(f'<polygon class="area" points="{first:.1f},{base:.1f} {line} {last:.1f},{base:.1f}"/>')
        parts.append(f'<polyline class="line" points="{line}"/>')
    elif points:  # one point is no line: a dot
        parts.append(f'<circle class="dot" cx="{x(points[0][0]):.1f}" cy="{y(points[0][1]):.1f}" r="2.5"/>')
    return _close(parts, not points)


def bar_chart(
    title: str,
    points: Sequence[tuple[datetime, float]],
    start: datetime,
    end: datetime,
    step: timedelta,
    label: Callable[[float], str],
    time_format: str,
) -> str:
    """An SVG bar chart: one bar for each (start of a step, value) between `start` and `end`."""
    parts, x, y, base = _frame(title, points, start, end, label, time_format)
    width = max(x(start + step) - x(start) - 1, 1.0)
    for at, value in points:
        top = y(value)
        parts.append(f'<rect class="bar" x="{x(at):.1f}" y="{top:.1f}" width="{width:.1f}" height="{base - top:.1f}"/>')
    return _close(parts, not points)


def _close(parts: list[str], empty: bool) -> str:
    if empty:
        middle = LEFT + (WIDTH - LEFT - RIGHT) / 2
        parts.append(f'<text x="{middle:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle">no samples yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def percent(value: float) -> str:
    """An axis label for a percentage."""
    return f"{value:.0f} %"


def size(value: float) -> str:
    """An axis label for bytes: KB, MB or GB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def hours(value: float) -> str:
    """An axis label for running hours."""
    return f"{value:.3g} h"
