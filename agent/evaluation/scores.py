"""Scores of one run against the truth: totals, events matched in time, and zone head counts.

Everything here is pure: the run's totals, its crossings with their frames and its per-frame zone
counts go in, figures come out, for the whole clip and for any frame ranges asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.evaluation.matching import EventScore, Matching, match_events, score_within
from agent.evaluation.truth import DIRECTIONS, Direction, LineTruth, Truth, ZoneTruth


@dataclass(frozen=True)
class FrameRange:
    """Frames ``first`` to ``last``, both included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if self.first < 0 or self.last < self.first:
            raise ValueError(f"a frame range needs 0 <= first <= last, got {self.first}:{self.last}")

    @classmethod
    def parse(cls, text: str) -> FrameRange:
        """``A:B`` (e.g. ``0:399``), both ends included."""
        first, sep, last = text.partition(":")
        if not sep or not first.strip().isdigit() or not last.strip().isdigit():
            raise ValueError(f"a frame range is FIRST:LAST with two frame numbers (e.g. 0:399), got {text!r}")
        return cls(int(first), int(last))

    def __contains__(self, frame: object) -> bool:
        return isinstance(frame, int) and self.first <= frame <= self.last

    def __str__(self) -> str:
        return f"{self.first}:{self.last}"


@dataclass(frozen=True)
class PredictedCrossing:
    """A crossing the agent counted: the frame it was reported in, the line and the direction."""

    frame: int
    line: str
    direction: Direction


def accuracy(abs_error: int, truth_total: int) -> float:
    """1 − Σ|error| / Σtruth, floored at 0; 1.0 when both are zero."""
    if truth_total == 0:
        return 1.0 if abs_error == 0 else 0.0
    return max(0.0, 1.0 - abs_error / truth_total)


@dataclass(frozen=True)
class LineScore:
    name: str
    expected: tuple[int, int]  # (in, out)
    counted: tuple[int, int]
    events: tuple[EventScore, EventScore] | None = None  # (in, out) when the truth lists crossings

    @property
    def abs_error(self) -> int:
        return abs(self.counted[0] - self.expected[0]) + abs(self.counted[1] - self.expected[1])

    @property
    def accuracy(self) -> float:
        return accuracy(self.abs_error, sum(self.expected))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "expected": {"in": self.expected[0], "out": self.expected[1]},
            "counted": {"in": self.counted[0], "out": self.counted[1]},
            "error": {"in": self.counted[0] - self.expected[0], "out": self.counted[1] - self.expected[1]},
            "accuracy": round(self.accuracy, 4),
        }
        if self.events is not None:
            out["events"] = {d: s.to_json() for d, s in zip(DIRECTIONS, self.events, strict=True)}
        return out


@dataclass(frozen=True)
class ZoneScore:
    name: str
    samples: int
    mean_abs_error: float
    mean_expected: float

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "mae": round(self.mean_abs_error, 3),
            "mean_truth": round(self.mean_expected, 3),
        }


@dataclass(frozen=True)
class Section:
    """The scores over the whole clip (``frames`` None) or over one frame range."""

    frames: FrameRange | None
    lines: tuple[LineScore, ...]
    zones: tuple[ZoneScore, ...]

    @property
    def line_accuracy(self) -> float:
        return accuracy(sum(s.abs_error for s in self.lines), sum(sum(s.expected) for s in self.lines))

    @property
    def events(self) -> EventScore | None:
        """All lines' and directions' matches together; None when no line lists its crossings."""
        scored = [e for s in self.lines if s.events is not None for e in s.events]
        return sum(scored, EventScore()) if scored else None

    @property
    def zone_mae(self) -> float | None:
        """Mean absolute error over every zone sample of every zone (None without samples)."""
        samples = sum(z.samples for z in self.zones)
        return sum(z.mean_abs_error * z.samples for z in self.zones) / samples if samples else None

    def to_json(self) -> dict[str, Any]:
        events, zone_mae = self.events, self.zone_mae
        return {
            "accuracy": round(self.line_accuracy, 4),
            "events": events.to_json() if events is not None else None,
            "zone_mae": round(zone_mae, 3) if zone_mae is not None else None,
            "lines": {s.name: s.to_json() for s in self.lines},
            "zones": {z.name: z.to_json() for z in self.zones},
        }

    def describe(self) -> list[str]:
        title = "whole clip" if self.frames is None else f"frames {self.frames}"
        width = max([len("line"), *(len(s.name) for s in self.lines)]) + 2
        rows = [f"{title}:", f"  {'line':<{width}}{'in':>11}{'out':>11}{'accuracy':>10}   {'P/R/F1 in':<17}P/R/F1 out"]
        for s in self.lines:
            prf = "   ".join(_prf(e) for e in s.events) if s.events is not None else "(no crossings listed)"
            rows.append(
                f"  {s.name:<{width}}{s.counted[0]:>4} of {s.expected[0]:<3}{s.counted[1]:>4} of {s.expected[1]:<3}"
                f"{s.accuracy:>10.1%}   {prf}"
            )
        rows.append(f"  line accuracy (1 - sum|error| / sum truth): {self.line_accuracy:.1%}")
        events = self.events
        if events is not None:
            rows.append(
                f"  events: {events.true_positives} matched, {events.false_negatives} missed, "
                f"{events.false_positives} invented; precision {events.precision:.1%}, recall {events.recall:.1%}, "
                f"F1 {events.f1:.1%}"
            )
        for z in self.zones:
            rows.append(
                f"  zone {z.name}: mean absolute error {z.mean_abs_error:.2f} people over {z.samples} frames "
                f"(truth mean {z.mean_expected:.2f})"
            )
        return rows


def _prf(score: EventScore) -> str:
    return f"{score.precision:.2f}/{score.recall:.2f}/{score.f1:.2f}"


@dataclass(frozen=True)
class EvalResult:
    model: str
    frames: int
    seconds: float
    tolerance: int
    whole: Section
    ranges: tuple[Section, ...] = ()

    @property
    def line_accuracy(self) -> float:
        return self.whole.line_accuracy

    @property
    def lines(self) -> tuple[LineScore, ...]:
        return self.whole.lines

    @property
    def zones(self) -> tuple[ZoneScore, ...]:
        return self.whole.zones

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "tolerance": self.tolerance,
            **self.whole.to_json(),
            "ranges": [{"frames": [r.frames.first, r.frames.last], **r.to_json()} for r in self.ranges if r.frames],
        }

    def describe(self) -> str:
        rows = [
            f"model {self.model}: {self.frames} frames in {self.seconds:.1f} s; "
            f"crossings match within {self.tolerance} frames"
        ]
        for section in (self.whole, *self.ranges):
            rows += section.describe()
        return "\n".join(rows)


def score(
    truth: Truth,
    totals: Mapping[str, Mapping[str, int]],
    zone_frames: Mapping[str, Sequence[int]],
    crossings: Sequence[PredictedCrossing] | None = None,
    tolerance: int = 10,
    ranges: Sequence[FrameRange] = (),
) -> tuple[Section, tuple[Section, ...]]:
    """Score a run: ``totals`` per line and direction, per-frame zone counts and, when given, the
    predicted crossings with their frames (needed for event scores and for frame ranges).
    """
    matchings = {
        (t.name, d): match_events(t.frames(d), _frames(crossings, t.name, d), tolerance)
        for t in truth.lines
        if t.crossings is not None and crossings is not None
        for d in DIRECTIONS
    }
    whole_lines = tuple(
        LineScore(
            t.name,
            (t.expected_in, t.expected_out),
            (totals[t.name]["in"], totals[t.name]["out"]),
            _events(matchings, t.name, None),
        )
        for t in truth.lines
    )
    whole = Section(None, whole_lines, tuple(_zone(z, zone_frames[z.name], None) for z in truth.zones))
    sections = []
    for frames in ranges:
        if crossings is None:
            raise ValueError("scoring frame ranges needs the predicted crossings with their frames")
        lines = tuple(_range_line(t, crossings, matchings, frames) for t in truth.lines if t.crossings is not None)
        zones = tuple(_zone(z, zone_frames[z.name], frames) for z in truth.zones)
        sections.append(Section(frames, lines, zones))
    return whole, tuple(sections)


def _frames(crossings: Sequence[PredictedCrossing] | None, line: str, direction: Direction) -> list[int]:
    return [c.frame for c in crossings or () if c.line == line and c.direction == direction]


def _events(
    matchings: Mapping[tuple[str, Direction], Matching], line: str, frames: FrameRange | None
) -> tuple[EventScore, EventScore] | None:
    if (line, "in") not in matchings:
        return None
    first, last = (frames.first, frames.last) if frames is not None else (0, 2**62)
    return score_within(matchings[line, "in"], first, last), score_within(matchings[line, "out"], first, last)


def _range_line(
    truth: LineTruth,
    crossings: Sequence[PredictedCrossing],
    matchings: Mapping[tuple[str, Direction], Matching],
    frames: FrameRange,
) -> LineScore:
    def within(values: Sequence[int]) -> int:
        return sum(1 for f in values if f in frames)

    expected = (within(truth.frames("in")), within(truth.frames("out")))
    counted = (within(_frames(crossings, truth.name, "in")), within(_frames(crossings, truth.name, "out")))
    return LineScore(truth.name, expected, counted, _events(matchings, truth.name, frames))


def _zone(truth: ZoneTruth, counts: Sequence[int], frames: FrameRange | None) -> ZoneScore:
    pairs = [
        (counts[frame], expected)
        for frame, expected in truth.samples
        if frame < len(counts) and (frames is None or frame in frames)
    ]
    mae = sum(abs(c - e) for c, e in pairs) / len(pairs) if pairs else 0.0
    mean = sum(e for _, e in pairs) / len(pairs) if pairs else 0.0
    return ZoneScore(truth.name, len(pairs), mae, mean)
