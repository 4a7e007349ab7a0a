"""Multi-person tracker in the ByteTrack style: Kalman prediction and two-stage IoU association.

Per frame:

1. Every live track is predicted ahead to the frame's time (in steps of ``frame_s`` seconds, so a
   dropped frame is a longer step, not a lost one).
2. High-score detections (``score >= high_threshold``) are matched to confirmed tracks, both those
   seen last frame and lost ones, by IoU with the Hungarian method. A lost track may only take a
   detection whose centre is within ``(reassoc_base + reassoc_speed * seconds lost)`` box heights
   of where it was last seen: a prediction coasting for seconds must not jump onto someone else.
3. Low-score detections (``low_threshold <= score < high_threshold``) are matched to the confirmed
   tracks seen last frame that are still unmatched. A partly hidden person often scores low; this
   keeps their track alive without letting weak detections start tracks of their own.
4. Remaining high-score detections are matched to tentative tracks. A tentative track that misses
   a frame is dropped; one matched in every frame for ``confirm_s`` seconds (from its first frame to
   the current one) becomes confirmed and gets the next id.
5. Remaining detections with ``score >= new_track_threshold`` start tentative tracks.
6. Confirmed tracks left unmatched are lost; once unseen for more than ``max_lost_s`` seconds
   they end, and their ids are reported once in ``TrackerUpdate.ended``.

Only confirmed tracks are reported, so a detection that flickers for a frame or two never counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.vision.assignment import linear_sum_assignment
from agent.vision.detections import Detections
from agent.vision.kalman import (
    STATE_SIZE,
    BoxKalmanFilter,
    FloatArray,
    boxes_to_measurements,
    states_to_boxes,
)

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
IntArray = npt.NDArray[np.intp]

# Cost given to pairs below the IoU gate: larger than any sum of real costs (each is at most 1).
_GATED_COST = 1e6

# Seconds by which a tentative track's age may fall short of confirm_s (frame times are rounded).
_TIME_SLACK_S = 1e-6


@dataclass(frozen=True)
class Track:
    """A confirmed person track in one frame, at the box of the detection it matched.

    ``filtered`` is the Kalman filter's box after correcting with that detection (the same box when
    not given): smoother than the raw detection, a little behind it when the person speeds up.
    """

    track_id: int
    xyxy: Box
    score: float
    hits: int
    filtered: Box | None = None

    @property
    def foot(self) -> tuple[float, float]:
        """Bottom-centre of the box: where the person stands."""
        x1, _, x2, y2 = self.xyxy
        return ((x1 + x2) / 2.0, y2)

    @property
    def filtered_foot(self) -> tuple[float, float]:
        """Bottom-centre of the filtered box."""
        x1, _, x2, y2 = self.filtered or self.xyxy
        return ((x1 + x2) / 2.0, y2)

    @property
    def height(self) -> float:
        return self.xyxy[3] - self.xyxy[1]

    @property
    def area(self) -> float:
        return (self.xyxy[2] - self.xyxy[0]) * (self.xyxy[3] - self.xyxy[1])


@dataclass(frozen=True)
class TrackerUpdate:
    """What one frame changed: confirmed tracks matched now, and ids of tracks that just ended."""

    tracks: tuple[Track, ...]
    ended: tuple[int, ...]


@dataclass(frozen=True)
class TrackerSettings:
    """Tracker thresholds; the defaults suit people walking in 10 fps video.

    Score thresholds depend on how the detector's scores are calibrated: YOLOX (objectness times
    class score) mostly gives people 0.3-0.9, an SSD 0.3-0.99. ``high_threshold`` should sit where
    clearly visible people score; ``low_threshold`` just above the detector's noise;
    ``new_track_threshold`` at or above ``high_threshold`` (only high-score detections start
    tracks, so a lower value acts as ``high_threshold``).

    - ``match_iou``: least IoU between a predicted track box and a detection for them to match.
    - ``low_match_iou``: the same for low-score detections; stricter, as they are less certain.
    - ``confirm_s``: seconds from a new track's first frame to the frame in which it is confirmed and
      reported, matched in every frame between; 0.2 is the third frame at 10 fps and the second at
      5 fps, so frames dropped under load do not delay confirmation.
    - ``max_lost_s``: seconds a confirmed track survives unseen.
    - ``frame_s``: the frame interval the motion model is tuned for (its velocities are per step of
      this length); frames are assumed this far apart when ``update`` is given no time.
    - ``reassoc_base``, ``reassoc_speed``: how far (box heights, and box heights per second lost) a lost
      track may be from where it was last seen to take a detection. People walk at about one body
      height per second; 2 per second and half a height of slack allow a brisk walk and box jitter.
    """

    high_threshold: float = 0.5
    low_threshold: float = 0.1
    new_track_threshold: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    confirm_s: float = 0.2
    max_lost_s: float = 3.0
    frame_s: float = 0.1
    reassoc_base: float = 0.5
    reassoc_speed: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_threshold <= self.high_threshold <= 1.0:
            raise ValueError("thresholds must satisfy 0 <= low_threshold <= high_threshold <= 1")
        if not 0.0 <= self.new_track_threshold <= 1.0:
            raise ValueError("new_track_threshold must lie in [0, 1]")
        for name in ("match_iou", "low_match_iou"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must lie in (0, 1], got {value}")
        if not self.confirm_s >= 0:
            raise ValueError("confirm_s must not be negative")
        if not self.max_lost_s >= 0:
            raise ValueError("max_lost_s must not be negative")
        if not self.frame_s > 0:
            raise ValueError("frame_s must be positive")
        if not (self.reassoc_base >= 0 and self.reassoc_speed >= 0):
            raise ValueError("reassoc_base and reassoc_speed must not be negative")


class _LiveTrack:
    """Bookkeeping of one live track; its Kalman state is a row of the tracker's arrays."""

    __slots__ = ("born_t", "box", "filtered", "hits", "missed", "score", "seen_t", "track_id")

    def __init__(self, box: Box, score: float, t: float) -> None:
        self.box = box
        self.filtered = box
        self.born_t = t
        self.seen_t = t
        self.score = score
        self.hits = 1
        self.missed = 0
        self.track_id: int | None = None  # set when confirmed


class ByteTracker:
    """Follows people from frame to frame; feed it every frame's detections in order."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self._settings = settings or TrackerSettings()
        self._kalman = BoxKalmanFilter()
        # Row i of the state arrays belongs to self._tracks[i].
        self._tracks: list[_LiveTrack] = []
        self._means: FloatArray = np.zeros((0, STATE_SIZE), dtype=np.float64)
        self._covariances: FloatArray = np.zeros((0, STATE_SIZE, STATE_SIZE), dtype=np.float64)
        self._next_id = 1
        self._frames = 0
        self._t: float | None = None

    @property
    def settings(self) -> TrackerSettings:
        return self._settings

    def update(self, detections: Detections, t: float | None = None) -> TrackerUpdate:
        """Advance to the frame at monotonic time ``t`` (seconds; one ``frame_s`` after the last
        frame when None) and return the confirmed tracks matched in it."""
        s = self._settings
        boxes, scores = _usable(detections, s.low_threshold)
        tracks = self._tracks
        if t is None:
            t = self._frames * s.frame_s if self._t is None else self._t + s.frame_s
        steps = 1.0 if self._t is None else max(t - self._t, 0.0) / s.frame_s
        self._t = t
        self._frames += 1

        self._predict(steps)
        predicted = states_to_boxes(self._means)
        confirmed = np.array([i for i, t in enumerate(tracks) if t.track_id is not None], dtype=np.intp)
        tentative = np.array([i for i, t in enumerate(tracks) if t.track_id is None], dtype=np.intp)
        high = np.flatnonzero(scores >= s.high_threshold)
        low = np.flatnonzero(scores < s.high_threshold)

        # Stage 1: high-score detections against every confirmed track, seen or lost.
        reach = self._reach(confirmed, boxes[high], t)
        rows, cols = _match(predicted[confirmed], boxes[high], s.match_iou, reach)
        hit_rows = [confirmed[rows]]
        hit_dets = [high[cols]]
        unmatched = np.delete(confirmed, rows)
        left_high = np.delete(high, cols)

        # Stage 2: low-score detections against the unmatched confirmed tracks seen last frame.
        seen = np.array([r for r in unmatched.tolist() if tracks[r].missed == 0], dtype=np.intp)
        rows, cols = _match(predicted[seen], boxes[low], s.low_match_iou)
        hit_rows.append(seen[rows])
        hit_dets.append(low[cols])

        # Stage 3: remaining high-score detections against tentative tracks.
        rows, cols = _match(predicted[tentative], boxes[left_high], s.match_iou)
        hit_rows.append(tentative[rows])
        hit_dets.append(left_high[cols])
        left_high = np.delete(left_high, cols)

        keep, ended = self._apply_matches(np.concatenate(hit_rows), np.concatenate(hit_dets), boxes, scores, t)
        if ended:
            logger.debug("tracks ended: %s", ended)

        # New tentative tracks from unmatched confident detections.
        starts = left_high[scores[left_high] >= s.new_track_threshold]
        new_means, new_covariances = self._kalman.initiate(boxes_to_measurements(boxes[starts]))
        self._tracks = [tracks[r] for r in np.flatnonzero(keep).tolist()]
        self._tracks.extend(
            _LiveTrack(_as_box(b), sc, t) for b, sc in zip(boxes[starts].tolist(), scores[starts].tolist(), strict=True)
        )
        self._means = np.concatenate([self._means[keep], new_means])
        self._covariances = np.concatenate([self._covariances[keep], new_covariances])

        reported: list[Track] = []
        for track in self._tracks:
            if track.missed:
                continue
            if track.track_id is None:
                if track.seen_t - track.born_t < s.confirm_s - _TIME_SLACK_S:
                    continue
                track.track_id = self._next_id
                self._next_id += 1
            reported.append(Track(track.track_id, track.box, track.score, track.hits, track.filtered))
        reported.sort(key=lambda t: t.track_id)
        return TrackerUpdate(tuple(reported), tuple(ended))

    def finish(self) -> tuple[int, ...]:
        """End every live confirmed track (end of stream) and return their ids in order."""
        ended = sorted(t.track_id for t in self._tracks if t.track_id is not None)
        self._tracks = []
        self._means = self._means[:0]
        self._covariances = self._covariances[:0]
        return tuple(ended)

    def _reach(self, rows: IntArray, dets: FloatArray, t: float) -> npt.NDArray[np.bool_] | None:
        """Which (track, detection) pairs are near enough for the lost tracks among ``rows``."""
        s = self._settings
        lost = [i for i, r in enumerate(rows.tolist()) if self._tracks[r].missed > 0]
        if not lost or dets.shape[0] == 0:
            return None
        allowed = np.ones((rows.shape[0], dets.shape[0]), dtype=bool)
        centres = np.stack([(dets[:, 0] + dets[:, 2]) / 2.0, (dets[:, 1] + dets[:, 3]) / 2.0], axis=1)
        for i in lost:
            track = self._tracks[int(rows[i])]
            x1, y1, x2, y2 = track.box
            height = max(y2 - y1, 1.0)
            limit = height * (s.reassoc_base + s.reassoc_speed * max(t - track.seen_t, 0.0))
            distance = np.hypot(centres[:, 0] - (x1 + x2) / 2.0, centres[:, 1] - (y1 + y2) / 2.0)
            allowed[i] = distance <= limit
        return allowed

    def _predict(self, steps: float) -> None:
        """Move every live track ``steps`` frames ahead."""
        if not self._tracks:
            return
        # A lost track keeps drifting along its path but stops growing or shrinking.
        lost = np.fromiter((t.missed > 0 for t in self._tracks), dtype=bool, count=len(self._tracks))
        self._means[lost, 7] = 0.0
        self._means, self._covariances = self._kalman.predict(self._means, self._covariances, steps)

    def _apply_matches(
        self, rows: IntArray, dets: IntArray, boxes: FloatArray, scores: FloatArray, t: float
    ) -> tuple[npt.NDArray[np.bool_], list[int]]:
        """Correct matched tracks, count misses; returns which rows live on and the ids that ended."""
        if rows.size:
            self._means[rows], self._covariances[rows] = self._kalman.update(
                self._means[rows], self._covariances[rows], boxes_to_measurements(boxes[dets])
            )
        filtered = states_to_boxes(self._means[rows]).tolist()
        for r, b, sc, fb in zip(rows.tolist(), boxes[dets].tolist(), scores[dets].tolist(), filtered, strict=True):
            track = self._tracks[r]
            track.box = _as_box(b)
            track.filtered = _as_box(fb)
            track.score = sc
            track.hits += 1
            track.missed = 0
            track.seen_t = t
        keep = np.zeros(len(self._tracks), dtype=bool)
        keep[rows] = True
        # Tentative tracks go at their first miss, confirmed ones once unseen for more than max_lost_s.
        ended: list[int] = []
        for r in np.flatnonzero(~keep).tolist():
            track = self._tracks[r]
            if track.track_id is None:
                continue
            track.missed += 1
            if t - track.seen_t <= self._settings.max_lost_s + 1e-9:
                keep[r] = True
            else:
                ended.append(track.track_id)
        return keep, ended


def _as_box(values: list[float]) -> Box:
    return (values[0], values[1], values[2], values[3])


def _usable(detections: Detections, low_threshold: float) -> tuple[FloatArray, FloatArray]:
    """Boxes and scores worth tracking: finite, non-empty, and not below ``low_threshold``."""
    boxes = np.asarray(detections.xyxy, dtype=np.float64)
    scores = np.asarray(detections.scores, dtype=np.float64)
    usable = (
        np.isfinite(boxes).all(axis=1)
        & np.isfinite(scores)
        & (boxes[:, 2] > boxes[:, 0])
        & (boxes[:, 3] > boxes[:, 1])
        & (scores >= low_threshold)
    )
    if usable.all():
        return boxes, scores
    return boxes[usable], scores[usable]


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    out: FloatArray = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _match(
    tracks: FloatArray, dets: FloatArray, min_iou: float, allowed: npt.NDArray[np.bool_] | None = None
) -> tuple[IntArray, IntArray]:
    """Hungarian matching on 1 - IoU among ``allowed`` pairs; returns matched (track rows, detection columns)."""
    empty = np.zeros(0, dtype=np.intp)
    if tracks.shape[0] == 0 or dets.shape[0] == 0:
        return empty, empty
    iou = iou_matrix(tracks, dets)
    gate = iou >= min_iou
    if allowed is not None:
        gate &= allowed
    if not gate.any():
        return empty, empty
    cost = np.where(gate, 1.0 - iou, _GATED_COST)
    rows, cols = linear_sum_assignment(cost)
    keep = gate[rows, cols]
    return np.asarray(rows[keep], dtype=np.intp), np.asarray(cols[keep], dtype=np.intp)
