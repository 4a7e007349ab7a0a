"""Matching predicted crossings to true ones, one to one within a tolerance, and scoring the match.

A total can be right while every event is wrong: a missed crossing and a phantom one cancel. Events
are therefore matched in time: each true crossing to at most one predicted crossing of the same line
and direction whose frame is at most ``tolerance`` frames away, and the other way round. Among all
such one-to-one matchings the one with the most pairs is taken, and among those the one with the
least total time difference (an assignment problem, solved exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.vision.assignment import linear_sum_assignment


@dataclass(frozen=True)
class Matching:
    """Which true frames were found (``pairs`` of true and predicted frame), missed, or invented."""

    pairs: tuple[tuple[int, int], ...]
    missed: tuple[int, ...]  # true frames with no predicted crossing
    extra: tuple[int, ...]  # predicted frames with no true crossing


def match_events(truth: Sequence[int], predicted: Sequence[int], tolerance: int) -> Matching:
    """The one-to-one matching with the most pairs ``|t − p| ≤ tolerance``, then the least Σ|t − p|."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be at least 0 frames, got {tolerance}")
    true_frames, found = sorted(truth), sorted(predicted)
    if not true_frames or not found:
        return Matching((), tuple(true_frames), tuple(found))
    diff = np.abs(np.subtract.outer(np.array(true_frames), np.array(found)))
    allowed = diff <= tolerance
    # Any pair beyond the tolerance costs more than every allowed pair together, so the solver first
    # maximises the number of allowed pairs and only then minimises their total time difference.
    forbidden = (tolerance + 1) * (min(len(true_frames), len(found)) + 1)
    rows, cols = linear_sum_assignment(np.where(allowed, diff, forbidden))
    kept = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]
    pairs = tuple(sorted((true_frames[r], found[c]) for r, c in kept))
    matched_rows, matched_cols = {r for r, _ in kept}, {c for _, c in kept}
    missed = tuple(f for i, f in enumerate(true_frames) if i not in matched_rows)
    extra = tuple(f for i, f in enumerate(found) if i not in matched_cols)
    return Matching(pairs, missed, extra)


@dataclass(frozen=True)
class EventScore:
    """True positives, false positives and false negatives of a matching, with the usual ratios.

    An empty denominator counts as perfect: no prediction means no false one (precision 1), no true
    event means nothing to miss (recall 1). F1 is their harmonic mean, 0 when both are 0.
    """

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: EventScore) -> EventScore:
        return EventScore(
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.false_negatives + other.false_negatives,
        )

    def to_json(self) -> dict[str, float | int]:
        return {
            "tp": self.true_positives,
            "fp": self.false_positives,
            "fn": self.false_negatives,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def score_within(matching: Matching, first: int, last: int) -> EventScore:
    """The part of a matching that falls in frames ``first``–``last`` (inclusive).

    A matched pair belongs where its true crossing is; a miss where the true crossing is; an invented
    crossing where it was predicted. Matching is done once over the whole clip, so a pair straddling
    the boundary is still a match.
    """

    def inside(frame: int) -> bool:
        return first <= frame <= last

    return EventScore(
        sum(1 for t, _ in matching.pairs if inside(t)),
        sum(1 for p in matching.extra if inside(p)),
        sum(1 for t in matching.missed if inside(t)),
    )
