"""Counting rules applied to the tracker's output: stationary objects, masks, per-zone filters, grace.

Tracks are made by hand and fed to ``TrafficPipeline.count_tracks``, the counting step after the
tracker, at 10 frames per second.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from agent.config import LineConfig, MaskConfig, ZoneConfig, parse_config
from agent.counting.geometry import Point
from agent.vision.detections import Detections
from agent.vision.detector import Detector
from agent.vision.masks import drop_masked
from agent.vision.pipeline import (
    CountingRules,
    FrameResult,
    TrafficPipeline,
    build_detector,
    build_pipeline,
    tracker_settings,
)
from agent.vision.source import parse_source, read_frames
from agent.vision.tracker import Track

ZONE = ZoneConfig(polygon=[(100.0, 100.0), (500.0, 100.0), (500.0, 500.0), (100.0, 500.0)])
HEIGHT = 100.0


def pipeline(**rules: Any) -> TrafficPipeline:
    rules.setdefault("zones", {"floor": ZONE})
    counting = TrafficPipeline(cast(Detector, object()), CountingRules(**rules))
    counting._layout(768, 576)
    return counting


def track(track_id: int, x: float, y: float, score: float = 0.9, height: float = HEIGHT) -> Track:
    box = (x - 20.0, y - height, x + 20.0, y)
    return Track(track_id, box, score, 10)


def run(counting: TrafficPipeline, frames: list[tuple[Track, ...]], fps: float = 10.0) -> list[FrameResult]:
    return [counting.count_tracks(i, i / fps, i / fps, tracks, ()) for i, tracks in enumerate(frames)]


def occupancy(results: list[FrameResult]) -> list[int]:
    return [result.zones[0].occupancy for result in results]


def test_a_mannequin_that_never_moves_never_counts_in_a_zone_while_a_walker_does() -> None:
    frames = [(track(1, 300.0 + (2.0 if i % 2 else -2.0), 300.0), track(2, 150.0 + 5.0 * i, 400.0)) for i in range(600)]
    results = run(pipeline(), frames)
    assert max(occupancy(results)) == 1
    assert all(1 not in result.zones[0].entered for result in results)
    assert any(2 in result.zones[0].entered for result in results)


def test_without_the_stationary_rule_the_mannequin_counts() -> None:
    frames = [(track(1, 300.0 + (2.0 if i % 2 else -2.0), 300.0),) for i in range(100)]
    assert occupancy(run(pipeline(stationary_s=None), frames))[-1] == 1


def test_a_person_standing_still_three_minutes_leaves_the_zone_then_rejoins_and_walks_out() -> None:
    walk_in = [(track(1, 50.0 + 10.0 * i, 300.0),) for i in range(21)]  # to x=250 in 2 s
    stand = [(track(1, 250.0 + (1.0 if i % 2 else 0.0), 300.0),) for i in range(1800)]
    walk_out = [(track(1, 260.0 + 10.0 * i, 300.0),) for i in range(1, 40)]  # out past x=500
    results = run(pipeline(stationary_s=60.0), walk_in + stand + walk_out)
    occ = occupancy(results)
    visits = [visit for result in results for visit in result.zones[0].exited]
    assert occ[100] == 1  # standing for 8 s: still a person in the zone
    assert occ[21 + 700] == 0  # standing for over a minute: stationary, not counted
    assert max(occ[21 + 620 : 21 + 1800]) == 0
    assert len(visits) == 2
    # Closed when it last moved beyond the radius (frame 18, 25 px before it stopped), not when found still.
    assert visits[0].exit_t == pytest.approx(1.8)
    assert visits[1].enter_t >= 2.1 + 180.0  # rejoined when it walked again, after the 3 minutes
    assert occ[-1] == 0


def test_a_coasting_track_leaves_the_zone_after_the_grace() -> None:
    seen = [(track(1, 150.0 + 10.0 * i, 300.0),) for i in range(10)]
    coasting: list[tuple[Track, ...]] = [() for _ in range(20)]  # the tracker keeps it alive, unseen
    occ = occupancy(run(pipeline(zones={"floor": ZONE.model_copy(update={"seen_grace_s": 0.5})}), seen + coasting))
    assert occ[9] == 1
    assert occ[9 + 5] == 1  # 0.5 s without a match: still counted
    assert occ[9 + 6] == 0  # past the grace
    never = occupancy(run(pipeline(zones={"floor": ZONE.model_copy(update={"seen_grace_s": 60.0})}), seen + coasting))
    assert never[-1] == 1


def test_per_zone_minimum_score_and_box_area() -> None:
    def walker(score: float, height: float) -> list[tuple[Track, ...]]:
        return [(track(1, 150.0 + 10.0 * i, 300.0, score=score, height=height),) for i in range(20)]

    strict = ZONE.model_copy(update={"min_score": 0.5, "min_box_area": 0.01})  # 4424 px² of 768x576
    assert max(occupancy(run(pipeline(zones={"floor": strict}), walker(0.9, 120.0)))) == 1
    assert max(occupancy(run(pipeline(zones={"floor": strict}), walker(0.4, 120.0)))) == 0
    assert max(occupancy(run(pipeline(zones={"floor": strict}), walker(0.9, 100.0)))) == 0  # 40x100 = 4000 px²


def test_exclusion_masks_drop_detections_by_foot_point() -> None:
    boxes = np.array([[10, 10, 50, 100], [200, 10, 240, 100], [10, 150, 50, 300]], dtype=np.float32)
    detections = Detections(boxes, np.array([0.9, 0.8, 0.7], dtype=np.float32))
    mask = [Point(0, 90), Point(100, 90), Point(100, 110), Point(0, 110)]  # holds only the first foot point
    kept = drop_masked(detections, [mask])
    assert kept.xyxy.tolist() == boxes[1:].tolist()
    assert drop_masked(detections, []) is detections


def test_masks_from_the_config_apply_before_tracking() -> None:
    counting = pipeline(masks={"poster": MaskConfig(polygon=[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)])})
    assert counting._masks == [[Point(0, 0), Point(384, 0), Point(384, 576), Point(0, 576)]]


def test_lines_use_the_configured_band() -> None:
    line = LineConfig(a=(0.0, 300.0), b=(768.0, 300.0), band=0.1)
    frames = [(track(1, 400.0, 300.0 + (8.0 if i // 2 % 2 else -8.0)),) for i in range(40)]
    results = run(pipeline(lines={"door": line}, zones={}), frames)
    assert [c for result in results for c in result.crossings] == []
    no_band = run(pipeline(lines={"door": line.model_copy(update={"band": 0.0})}, zones={}), frames)
    assert len([c for result in no_band for c in result.crossings]) > 0


def walkers(t: int) -> Detections:
    """Four people at frame ``t`` of 10 fps: two crossing the line y=300 (down and up), one crossing
    x=400 and standing a while in the zone, one lingering near the line with a jittering box."""
    people = []
    if t < 60:
        people.append((200.0, 150.0 + 6.0 * t))  # down across y=300 at t=25
    if 10 <= t < 80:
        people.append((600.0, 500.0 - 5.0 * (t - 10)))  # up across y=300 at t=50
    if t < 90:
        x = 250.0 + 8.0 * min(t, 30) + (8.0 * (t - 60) if t > 60 else 0.0)
        people.append((x, 450.0))  # right across x=400, stands at x=490 for 3 s, then walks on
    people.append((650.0 + (3.0 if t % 3 else -3.0), 300.0 + (4.0 if t % 2 else -4.0)))  # jitter on the line
    boxes = np.array([(x - 25.0, y - 110.0, x + 25.0, y) for x, y in people], dtype=np.float32)
    return Detections(boxes, np.full(len(people), 0.9, dtype=np.float32))


def counts(step: int) -> tuple[list[tuple[str, str]], list[int]]:
    """Crossings and zone visits over 10 s of the scene, processing every ``step``-th frame."""
    lines = {
        "across": LineConfig(a=(0.0, 300.0), b=(768.0, 300.0)),
        "side": LineConfig(a=(400.0, 576.0), b=(400.0, 0.0)),
    }
    zone = ZoneConfig(polygon=[(420.0, 380.0), (560.0, 380.0), (560.0, 520.0), (420.0, 520.0)])
    counting = pipeline(lines=lines, zones={"shelf": zone})
    crossings, visits = [], []
    results = [counting.process_detections(t, t / 10.0, walkers(t)) for t in range(0, 100, step)]
    results.append(counting.finish())
    for result in results:
        crossings += [(c.line, c.direction) for c in result.crossings]
        visits += [round(v.dwell_s) for v in result.zones[0].exited]
    return sorted(crossings), visits


def test_the_same_trajectories_at_10_fps_and_with_every_other_frame_dropped_give_the_same_counts() -> None:
    full, half = counts(1), counts(2)
    assert full == half
    assert full[0] == [("across", "in"), ("across", "out"), ("side", "in")]
    assert full[1] == [5]


def test_the_config_reaches_the_counting_rules() -> None:
    config = parse_config(
        {
            "camera": {
                "lines": {"door": {"a": [0, 300], "b": [768, 300], "band": 0.2}},
                "zones": {"till": {"polygon": [[0, 0], [9, 0], [9, 9]], "seen_grace_s": 1.5, "min_score": 0.4}},
                "masks": {"mirror": {"polygon": [[0, 0], [50, 0], [50, 50]]}},
            },
            "counting": {"stationary_s": 30.0, "stationary_radius": 0.5, "hold_s": 0.3, "zone_min_s": 0.2},
        }
    )
    spec = SimpleNamespace(track_threshold=0.5, new_track_threshold=0.6)
    rules = build_pipeline(config, detector=cast(Detector, SimpleNamespace(spec=spec))).rules
    assert rules.lines["door"].band == 0.2
    assert (rules.zones["till"].seen_grace_s, rules.zones["till"].min_score) == (1.5, 0.4)
    assert list(rules.masks) == ["mirror"]
    assert (rules.stationary_s, rules.stationary_radius, rules.hold_s, rules.zone_min_s) == (30.0, 0.5, 0.3, 0.2)


@pytest.mark.integration
@pytest.mark.slow
def test_the_sign_stand_in_the_sample_clip_never_counts_in_a_zone_around_it(vtest_path: Path, yolox_path: Path) -> None:
    """YOLOX-Nano detects the blue sign stand in the upper left of the clip as a person from about
    frame 196 to the end (its foot point near (40, 145)); the tracker's low-score stage keeps it
    alive. It never moves, so with the stationary rule it never counts in a zone around it."""
    config = parse_config({"detector": {"family": "yolox"}})
    detector = build_detector(config, str(yolox_path))
    sign = ZoneConfig(polygon=[(10.0, 100.0), (90.0, 100.0), (90.0, 180.0), (10.0, 180.0)])
    with_rule = TrafficPipeline(
        detector, CountingRules(zones={"sign": sign}), tracker_settings(config.tracker, detector.spec)
    )
    without = TrafficPipeline(
        detector,
        CountingRules(zones={"sign": sign}, stationary_s=None),
        tracker_settings(config.tracker, detector.spec),
    )
    occupancy: dict[str, list[int]] = {"with": [], "without": []}
    for frame in read_frames(parse_source(str(vtest_path)), file_start_t=0.0):
        if frame.index == 0:
            with_rule._layout(frame.image.shape[1], frame.image.shape[0])
            without._layout(frame.image.shape[1], frame.image.shape[0])
        detections = detector.detect(frame.image)
        occupancy["with"].append(with_rule.process_detections(frame.index, frame.t, detections).zones[0].occupancy)
        occupancy["without"].append(without.process_detections(frame.index, frame.t, detections).zones[0].occupancy)
    late = slice(250, None)
    assert sum(occupancy["without"][late]) > 0.9 * len(occupancy["without"][late])  # the stand counted as a person
    assert max(occupancy["with"][late]) == 0


def shelf_visits(step: int, **rules: Any) -> tuple[list[tuple[int, float, float, float]], dict[int, int]]:
    """Visits (track, entry, exit, dwell) of the walkers' scene to a shelf zone, and its occupancy by
    frame, processing every ``step``-th frame of 10 fps."""
    zone = ZoneConfig(polygon=[(420.0, 380.0), (560.0, 380.0), (560.0, 520.0), (420.0, 520.0)])
    counting = pipeline(lines={}, zones={"shelf": zone}, **rules)
    frames = range(0, 100, step)
    results = [counting.process_detections(t, t / 10.0, walkers(t)) for t in frames]
    occupied = {t: result.zones[0].occupancy for t, result in zip(frames, results, strict=True)}
    results.append(counting.finish())
    visits = [(v.track_id, v.enter_t, v.exit_t, v.dwell_s) for result in results for v in result.zones[0].exited]
    return visits, occupied


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        # the walker enters at 2.2 s, stands from 3.0 s to 6.0 s and leaves at 6.9 s
        pytest.param({}, [(2.2, 6.9)], id="one-visit-through-the-standstill"),
        # stationary after 1.5 s still: the visit closes when it stopped moving, a new one opens
        # when it walks on (it has moved beyond the radius by 6.4 s)
        pytest.param({"stationary_s": 1.5}, [(2.2, 3.0), (6.4, 6.9)], id="stationary-splits-the-visit"),
    ],
)
def test_zone_visits_dwell_and_stationarity_do_not_depend_on_dropped_frames(
    rules: dict[str, Any], expected: list[tuple[float, float]]
) -> None:
    full, full_occupancy = shelf_visits(1, **rules)
    half, half_occupancy = shelf_visits(2, **rules)
    assert [(enter, exit) for _, enter, exit, _ in full] == pytest.approx(expected)
    assert len(half) == len(full)
    for (track_a, enter_a, exit_a, dwell_a), (track_b, enter_b, exit_b, dwell_b) in zip(full, half, strict=True):
        assert track_a == track_b  # confirmed, and so numbered, in the same order
        # a border or a start of motion is seen at most one dropped frame (0.1 s) later
        assert enter_a <= enter_b <= enter_a + 0.1 + 1e-9
        assert exit_a <= exit_b <= exit_a + 0.1 + 1e-9
        assert dwell_b == pytest.approx(dwell_a, abs=0.1 + 1e-9)
    differing = [t for t, occupied in half_occupancy.items() if full_occupancy[t] != occupied]
    assert len(differing) <= 2 * len(expected)  # only the frames at an entry or an exit
