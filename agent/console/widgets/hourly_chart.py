"""Entries per hour today beside the same weekday last week, drawn in plain characters.

Each hour has two columns: today's bar in full blocks (█), last week's in light shade (░), so the
two series differ by their glyph, never by colour alone. An hour whose count is below the display
threshold shows a dot (·) at the bottom instead of a bar, as "<11" would in a table; an hour of
today that has not begun shows nothing. Bars are scaled to the largest count shown, written at the
top left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

TODAY = "█"
LAST_WEEK = "░"
BELOW = "·"
HEIGHT = 5
HOURS = 24
LABEL_WIDTH = 5


def _height(count: int | None, threshold: int, top: int, height: int) -> int:
    if count is None or count < threshold or top <= 0:
        return 0
    return max(1, math.ceil(count * height / top))


def _glyph(count: int | None, bar: int, level: int, threshold: int, glyph: str) -> str:
    if bar >= level:
        return glyph
    if level == 1 and count is not None and count < threshold:
        return BELOW
    return " "


def hourly_chart(
    today: Sequence[int | None],
    last_week: Sequence[int | None],
    threshold: int,
    last_week_label: str,
    height: int = HEIGHT,
) -> str:
    """The chart as lines of text, 77 columns wide: a legend, ``height`` rows of bars, an hour axis."""
    if len(today) != HOURS or len(last_week) != HOURS:
        raise ValueError(f"today and last_week must have {HOURS} hours, not {len(today)} and {len(last_week)}")
    counts = [c for c in (*today, *last_week) if c is not None and c >= threshold]
    top = max(counts, default=0)
    bars = [
        (_height(t, threshold, top, height), _height(w, threshold, top, height))
        for t, w in zip(today, last_week, strict=True)
    ]
    lines = [f"Entries per hour: {TODAY} today  {LAST_WEEK} {last_week_label}  {BELOW} below {threshold}"]
    for level in range(height, 0, -1):
        label = f"{top:>{LABEL_WIDTH - 1}} " if level == height and top else " " * LABEL_WIDTH
        cells = [
            _glyph(t, tb, level, threshold, TODAY) + _glyph(w, wb, level, threshold, LAST_WEEK)
            for (t, w), (tb, wb) in zip(zip(today, last_week, strict=True), bars, strict=True)
        ]
        lines.append(f"{label}│{' '.join(cells)}".rstrip())
    axis = [" "] * (LABEL_WIDTH + 1 + HOURS * 3)
    for hour in range(0, HOURS, 3):
        for offset, char in enumerate(f"{hour:02d}"):
            axis[LABEL_WIDTH + 1 + hour * 3 + offset] = char
    lines.append("".join(axis).rstrip())
    return "\n".join(lines)
