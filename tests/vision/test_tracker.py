"""Behaviour of the ByteTrack-style tracker, on synthetic walkers and on the sample clip."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from agent.vision.detections import Detections
from agent.vision.detector import Detector
from agent.vision.models import resolve_model
from agent.vision.tracker import ByteTracker, Track, TrackerSettings, TrackerUpdate, iou_matrix

Box = tuple[float, float, float, float]


def person(x: float, y: float, w: float = 40.0, h: float = 100.0) -> Box:
    """A person box whose feet are at (x, y)."""
    return (x - w / 2, y - h, x + w / 2, y)


def frame(*people: tuple[Box, float]) -> Detections:
    if not people:
        return Detections.empty()
    boxes = np.array([box for box, _ in people], dtype=np.float32)
    scores = np.array([score for _, score in people], dtype=np.float32)
    return Detections(boxes, scores)


def walk(start: tuple[float, float], step: tuple[float, float], t: float) -> Box:
    return person(start[0] + step[0] * t, start[1] + step[1] * t)


def ids(update: TrackerUpdate) -> list[int]:
    return [track.track_id for track in update.tracks]


def nearest(update: TrackerUpdate, foot: tuple[float, float]) -> Track:
    return min(update.tracks, key=lambda t: (t.foot[0] - foot[0]) ** 2 + (t.foot[1] - foot[1]) ** 2)


# --- values and settings ---------------------------------------------------------------------------


def test_foot_is_bottom_centre_of_the_box() -> None:
    track = Track(track_id=1, xyxy=(10.0, 20.0, 50.0, 120.0), score=0.9, hits=3)
    assert track.foot == (30.0, 120.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"low_threshold": 0.6, "high_threshold": 0.5}, "low_threshold"),
        ({"high_threshold": 1.5}, "high_threshold"),
        ({"new_track_threshold": -0.1}, "new_track_threshold"),
        ({"match_iou": 0.0}, "match_iou"),
        ({"low_match_iou": 1.2}, "low_match_iou"),
        ({"confirm_s": -0.1}, "confirm_s"),
        ({"max_lost_s": -1.0}, "max_lost_s"),
    ],
)
def test_settings_refuse_impossible_values(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrackerSettings(**changes)  # type: ignore[arg-type]


def test_default_settings_suit_ten_fps_pedestrian_video() -> None:
    settings = TrackerSettings()
    assert settings.low_threshold < settings.high_threshold <= settings.new_track_threshold
    assert settings.confirm_s == 0.2
    assert settings.max_lost_s == 3.0


def test_iou_matrix_compares_every_pair() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
    b = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]])
    assert iou_matrix(a, b[:0]).shape == (2, 0)


# --- confirmation and ids ----------------------------------------------------------------------------


def test_detection_seen_for_less_than_confirm_s_is_never_reported() -> None:
    tracker = ByteTracker(TrackerSettings(confirm_s=0.2))
    updates = [tracker.update(frame((walk((100, 300), (5, 0), t), 0.9))) for t in range(2)]
    updates += [tracker.update(frame()) for _ in range(40)]
    assert all(not u.tracks and not u.ended for u in updates)
    assert tracker.finish() == ()


def test_track_is_reported_from_the_frame_confirm_s_after_its_first_on() -> None:
    tracker = ByteTracker(TrackerSettings(confirm_s=0.2))
    reported = [ids(tracker.update(frame((walk((100, 300), (5, 0), t), 0.9)))) for t in range(5)]
    assert reported == [[], [], [1], [1], [1]]


@pytest.mark.parametrize("fps", [10, 5, 2.5])
def test_the_same_walk_confirms_at_the_same_time_at_any_frame_rate(fps: float) -> None:
    """A walker seen at 10 fps or with frames dropped down to 5 or 2.5 fps is confirmed 0.4 s after
    appearing (confirm_s 0.4), not after a fixed number of frames."""
    tracker = ByteTracker(TrackerSettings(confirm_s=0.4))
    step = 10 / fps  # frames of the 10 fps walk per processed frame
    confirmed_at = None
    for i in range(12):
        t10 = i * step
        update = tracker.update(frame((walk((100, 300), (5, 0), t10), 0.9)), t=t10 / 10)
        if update.tracks and confirmed_at is None:
            confirmed_at = t10 / 10
    assert confirmed_at == pytest.approx(0.4)


def test_flicker_does_not_consume_an_id() -> None:
    tracker = ByteTracker()
    tracker.update(frame((person(600, 400), 0.9)))  # a one-frame false positive
    for t in range(4):
        update = tracker.update(frame((walk((100, 300), (5, 0), t), 0.9)))
    assert ids(update) == [1]


def test_tentative_track_missing_one_frame_starts_over() -> None:
    tracker = ByteTracker(TrackerSettings(confirm_s=0.2))
    box = person(200, 300)
    seen = [tracker.update(frame((box, 0.9))), tracker.update(frame())]
    seen += [tracker.update(frame((box, 0.9))) for _ in range(3)]
    assert [ids(u) for u in seen] == [[], [], [], [], [1]]


def test_confirm_s_of_zero_reports_a_track_at_once() -> None:
    tracker = ByteTracker(TrackerSettings(confirm_s=0.0))
    assert ids(tracker.update(frame((person(200, 300), 0.9)))) == [1]


def test_reported_box_is_the_matched_detection_not_the_prediction() -> None:
    tracker = ByteTracker()
    for t in range(6):
        box = walk((100, 300), (8, 0), t)
        update = tracker.update(frame((box, 0.8)))
    jittered = (box[0] + 3.0, box[1] - 2.0, box[2] + 1.0, box[3] + 4.0)
    update = tracker.update(frame((jittered, 0.7)))
    (track,) = update.tracks
    assert track.xyxy == pytest.approx(jittered)
    assert track.score == pytest.approx(0.7)
    assert track.hits == 7


# --- association -------------------------------------------------------------------------------------


def test_ids_follow_the_boxes_whatever_order_the_detector_lists_them_in() -> None:
    tracker = ByteTracker()
    feet: dict[int, float] = {}
    for t in range(12):
        people = [(walk((100, 300), (5, 0), t), 0.9), (walk((500, 420), (-5, 0), t), 0.8)]
        if t % 2:
            people.reverse()
        for track in tracker.update(frame(*people)).tracks:
            start = feet.setdefault(track.track_id, track.foot[0])
            assert abs(track.foot[0] - start) <= 5 * t, "an id jumped to the other person"
    assert sorted(feet) == [1, 2]


@pytest.mark.parametrize("occluded_frames", [0, 3])
def test_two_people_walking_past_each_other_keep_their_ids(occluded_frames: int) -> None:
    tracker = ByteTracker()
    a_start, a_step = (100.0, 300.0), (12.0, 1.5)
    b_start, b_step = (580.0, 320.0), (-12.0, -1.0)
    crossing = 20  # both are near x=340 at t=20
    first: dict[str, int] = {}
    for t in range(41):
        a, b = walk(a_start, a_step, t), walk(b_start, b_step, t)
        hidden = abs(t - crossing) < occluded_frames  # b walks behind a
        update = tracker.update(frame((a, 0.85), (b, 0.8)) if not hidden else frame((a, 0.85)))
        assert len(set(ids(update))) == len(update.tracks)
        if t == 5:
            first = {
                "a": nearest(update, (a[0] + 20, a[3])).track_id,
                "b": nearest(update, (b[0] + 20, b[3])).track_id,
            }
            assert first["a"] != first["b"]
    assert nearest(update, (a[0] + 20, a[3])).track_id == first["a"]
    assert nearest(update, (b[0] + 20, b[3])).track_id == first["b"]
    assert sorted(ids(update)) == [1, 2]


def test_track_missing_for_a_few_frames_keeps_its_id_when_it_reappears_along_its_path() -> None:
    tracker = ByteTracker()
    reported: list[list[int]] = []
    ended: list[int] = []
    for t in range(30):
        gone = 10 <= t < 16  # six frames behind a pillar
        update = tracker.update(frame() if gone else frame((walk((50, 300), (10, 1), t), 0.9)))
        reported.append(ids(update))
        ended.extend(update.ended)
    assert reported[9] == [1]
    assert all(r == [] for r in reported[10:16])
    assert all(r == [1] for r in reported[16:])
    assert ended == []


def test_track_missing_longer_than_max_lost_s_is_ended_once_and_never_again() -> None:
    tracker = ByteTracker(TrackerSettings(max_lost_s=0.5))
    for t in range(5):
        tracker.update(frame((walk((50, 300), (10, 0), t), 0.9)))
    ended_at = []
    for t in range(5, 30):
        update = tracker.update(frame())
        assert not update.tracks
        ended_at.extend((t, track_id) for track_id in update.ended)
    # Last seen at t=4; missed t=5..9 (five frames) is tolerated, the sixth miss ends it.
    assert ended_at == [(10, 1)]
    assert tracker.finish() == ()


def test_person_returning_after_their_track_ended_gets_a_new_id() -> None:
    tracker = ByteTracker(TrackerSettings(max_lost_s=0.3))
    box = person(300, 300)
    for _ in range(4):
        tracker.update(frame((box, 0.9)))
    for _ in range(4):
        tracker.update(frame())
    updates = [tracker.update(frame((box, 0.9))) for _ in range(3)]
    assert ids(updates[-1]) == [2]


def test_low_score_detections_continue_a_track() -> None:
    tracker = ByteTracker()
    for t in range(5):
        tracker.update(frame((walk((50, 300), (6, 0), t), 0.9)))
    # Partly hidden: the detector still sees the person, but only at 0.3.
    later = [tracker.update(frame((walk((50, 300), (6, 0), t), 0.3))) for t in range(5, 15)]
    assert all(ids(u) == [1] for u in later)
    assert later[-1].tracks[0].score == pytest.approx(0.3)


def test_low_score_detections_never_start_a_track() -> None:
    tracker = ByteTracker()
    updates = [tracker.update(frame((walk((50, 300), (6, 0), t), 0.45))) for t in range(20)]
    assert all(not u.tracks for u in updates)
    # Neither do high-score ones below new_track_threshold.
    tracker = ByteTracker(TrackerSettings(high_threshold=0.5, new_track_threshold=0.6))
    updates = [tracker.update(frame((walk((50, 300), (6, 0), t), 0.55))) for t in range(20)]
    assert all(not u.tracks for u in updates)


def test_low_score_detection_does_not_revive_a_lost_track() -> None:
    tracker = ByteTracker()
    for t in range(5):
        tracker.update(frame((walk((50, 300), (6, 0), t), 0.9)))
    tracker.update(frame())
    assert not tracker.update(frame((walk((50, 300), (6, 0), 6), 0.3))).tracks
    assert ids(tracker.update(frame((walk((50, 300), (6, 0), 7), 0.9)))) == [1]


def test_scores_below_low_threshold_and_broken_boxes_are_ignored() -> None:
    tracker = ByteTracker()
    for t in range(4):
        update = tracker.update(frame((walk((50, 300), (6, 0), t), 0.9)))
    noise = np.array([walk((50, 300), (6, 0), 4), (10, 10, 10, 50), (np.nan, 0, 5, 5), (30, 30, 20, 60)], np.float32)
    update = tracker.update(Detections(noise, np.array([0.05, 0.9, 0.9, 0.9], np.float32)))
    assert update.tracks == ()
    assert ids(tracker.update(frame((walk((50, 300), (6, 0), 5), 0.9)))) == [1]


def test_thresholds_can_follow_a_detector_with_other_score_calibration() -> None:
    # An SSD that scores clearly visible people 0.9+ and partly hidden ones around 0.6.
    ssd = TrackerSettings(high_threshold=0.8, low_threshold=0.4, new_track_threshold=0.85)
    tracker = ByteTracker(ssd)
    for t in range(5):
        tracker.update(frame((walk((50, 300), (6, 0), t), 0.95), (person(600, 400), 0.65)))
    update = tracker.update(frame((walk((50, 300), (6, 0), 5), 0.6), (person(600, 400), 0.65)))
    assert ids(update) == [1]


def test_empty_detections_every_frame_work() -> None:
    tracker = ByteTracker()
    updates = [tracker.update(Detections.empty()) for _ in range(50)]
    assert all(u == TrackerUpdate((), ()) for u in updates)
    assert tracker.finish() == ()


def test_finish_ends_every_live_confirmed_track_and_later_ids_keep_increasing() -> None:
    tracker = ByteTracker(TrackerSettings(max_lost_s=1.0))
    for t in range(4):
        tracker.update(frame((walk((50, 300), (6, 0), t), 0.9), (walk((600, 200), (-6, 0), t), 0.9)))
    tracker.update(frame((walk((50, 300), (6, 0), 4), 0.9)))  # the second one is lost, not ended
    tracker.update(frame((person(400, 500), 0.9)))  # tentative, never confirmed
    assert tracker.finish() == (1, 2)
    assert tracker.finish() == ()
    for _ in range(3):
        update = tracker.update(frame((person(400, 500), 0.9)))
    assert ids(update) == [3]


def test_ids_are_unique_dense_and_never_reused_in_a_busy_scene() -> None:
    rng = np.random.default_rng(7)
    walkers = []
    for _ in range(25):
        start = (float(rng.uniform(0, 700)), float(rng.uniform(150, 550)))
        step = (float(rng.uniform(-9, 9)), float(rng.uniform(-3, 3)))
        walkers.append((int(rng.integers(0, 150)), int(rng.integers(15, 60)), start, step))
    tracker = ByteTracker(TrackerSettings(max_lost_s=1.0))
    ended: list[int] = []
    seen: set[int] = set()
    for t in range(220):
        people = [
            (walk(start, step, t - t0), float(rng.uniform(0.3, 0.95)))
            for t0, length, start, step in walkers
            if t0 <= t < t0 + length
        ]
        update = tracker.update(frame(*people))
        now = ids(update)
        assert len(now) == len(set(now))
        assert not set(now) & set(ended), "an ended id came back"
        assert not set(update.ended) & set(now)
        seen.update(now)
        ended.extend(update.ended)
    ended.extend(tracker.finish())
    assert len(ended) == len(set(ended))
    assert sorted(ended) == sorted(seen) == list(range(1, len(seen) + 1))
    assert 15 <= len(seen) <= 40


def test_update_costs_well_under_a_millisecond_with_thirty_people() -> None:
    rng = np.random.default_rng(3)
    start = rng.uniform([0, 150], [700, 550], (30, 2))
    step = rng.uniform([-8, -2], [8, 2], (30, 2))
    tracker = ByteTracker()
    costs = []
    for t in range(150):
        feet = start + step * t
        boxes = np.concatenate([feet - np.array([20, 100]), feet + np.array([20, 0])], axis=1).astype(np.float32)
        boxes += rng.normal(0, 1.5, boxes.shape).astype(np.float32)
        scores = rng.uniform(0.2, 0.95, 30).astype(np.float32)
        detections = Detections(boxes, scores)
        began = time.perf_counter()
        tracker.update(detections)
        costs.append(time.perf_counter() - began)
    # Typically about 0.5 ms on one core; the bound leaves room for a busy test machine.
    assert float(np.median(costs[10:])) < 2e-3


# --- the sample clip ---------------------------------------------------------------------------------

CLIP_FRAMES = 150
INPUT_SIZE = 416


def _yolox_person_detections(model: Path, video: Path, frames: int) -> list[Detections]:
    """Detect people with YOLOX-Nano, decoded here so the test depends only on the tracker."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    grids, strides = [], []
    for stride in (8, 16, 32):
        n = INPUT_SIZE // stride
        ys, xs = np.mgrid[0:n, 0:n]
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((n * n, 1), stride))
    grid = np.concatenate(grids).astype(np.float32)
    stride_col = np.concatenate(strides).astype(np.float32)

    capture = cv2.VideoCapture(str(video))
    out: list[Detections] = []
    try:
        while len(out) < frames:
            ok, image = capture.read()
            if not ok:
                break
            h, w = image.shape[:2]
            ratio = min(INPUT_SIZE / h, INPUT_SIZE / w)
            resized = cv2.resize(image, (round(w * ratio), round(h * ratio)), interpolation=cv2.INTER_LINEAR)
            canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), 114, dtype=np.uint8)
            canvas[: resized.shape[0], : resized.shape[1]] = resized
            blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
            raw = session.run(None, {input_name: blob})[0][0]
            centres = (raw[:, :2] + grid) * stride_col / ratio
            sizes = np.exp(raw[:, 2:4]) * stride_col / ratio
            scores = raw[:, 4] * raw[:, 5]
            keep = scores >= 0.1
            centres, sizes, scores = centres[keep], sizes[keep], scores[keep]
            xywh = np.concatenate([centres - sizes / 2, sizes], axis=1)
            picked = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.1, 0.45)
            picked = np.asarray(picked, dtype=np.int64).reshape(-1)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)[picked]
            out.append(Detections(xyxy.astype(np.float32), scores[picked].astype(np.float32)))
    finally:
        capture.release()
    return out


def _default_model_detections(video: Path, frames: int) -> tuple[list[Detections], TrackerSettings]:
    """Detect people with the shipped default model, with the tracker thresholds its manifest gives."""
    spec = resolve_model("ssdlite-pedestrian")
    detector = Detector(spec)
    capture = cv2.VideoCapture(str(video))
    out: list[Detections] = []
    try:
        while len(out) < frames:
            ok, image = capture.read()
            if not ok:
                break
            out.append(detector.detect(image))
    finally:
        capture.release()
    settings = TrackerSettings(high_threshold=spec.track_threshold, new_track_threshold=spec.new_track_threshold)
    return out, settings


@pytest.fixture(scope="session", params=["ssd", "yolox"])
def clip_detections(request: pytest.FixtureRequest, vtest_path: Path) -> tuple[Sequence[Detections], TrackerSettings]:
    """The clip's people as each real model sees them; only the YOLOX case needs the YOLOX-Nano export."""
    if request.param == "ssd":
        return _default_model_detections(vtest_path, CLIP_FRAMES)
    yolox_path: Path = request.getfixturevalue("yolox_path")
    return _yolox_person_detections(yolox_path, vtest_path, CLIP_FRAMES), TrackerSettings()


@pytest.mark.integration
@pytest.mark.slow
def test_tracks_on_the_sample_clip_are_plausible(
    clip_detections: tuple[Sequence[Detections], TrackerSettings],
) -> None:
    detections_per_frame, settings = clip_detections
    assert len(detections_per_frame) == CLIP_FRAMES
    tracker = ByteTracker(settings)
    lengths: Counter[int] = Counter()
    ended: list[int] = []
    per_frame: list[int] = []
    for detections in detections_per_frame:
        update = tracker.update(detections)
        now = ids(update)
        assert len(now) == len(set(now)), "an id reported twice in one frame"
        assert not set(now) & set(ended), "an ended id came back"
        lengths.update(now)
        ended.extend(update.ended)
        per_frame.append(len(now))
    ended.extend(tracker.finish())

    assert sorted(ended) == sorted(lengths) == list(range(1, len(lengths) + 1))
    # Some 5-15 people are in view at a time over these 15 seconds, a few coming and going.
    assert 8 <= len(lengths) <= 40
    assert 4 <= float(np.median(per_frame[10:])) <= 15
    assert float(np.mean(list(lengths.values()))) >= 20


# --- time and re-association --------------------------------------------------------------------------


def runner(t: float) -> Box:
    """A wide box moving 25 px a frame (2.5 box heights a second at 10 fps)."""
    return person(50 + 25 * t, 300, w=80)


def lost_and_found(settings: TrackerSettings, gap: int) -> tuple[list[int], list[int]]:
    """The runner seen 8 frames, unseen ``gap`` frames, then seen again where its prediction is.

    Returns the ids before the gap and those reported once it has been seen again 3 times.
    """
    tracker = ByteTracker(settings)
    before = []
    for t in range(8):
        before = ids(tracker.update(frame((runner(t), 0.9))))
    for _ in range(gap):
        tracker.update(frame())
    after: list[int] = []
    for k in range(3):
        after = ids(tracker.update(frame((runner(8 + gap + k), 0.9))))
    return before, after


@pytest.mark.parametrize(
    ("reassoc_speed", "gap", "same_track"),
    [
        # Lost for 2 s, the prediction coasts 5 box heights from where it was last seen, beyond the
        # limit of 0.5 + 2 x 2 = 4.5 heights: whoever is there now is someone else.
        pytest.param(2.0, 20, False, id="beyond-the-limit-a-new-track"),
        pytest.param(100.0, 20, True, id="without-a-limit-the-lost-track-jumps"),
        pytest.param(2.0, 3, True, id="a-short-loss-is-within-the-limit"),
    ],
)
def test_a_rematch_beyond_the_distance_limit_starts_a_new_track(
    reassoc_speed: float, gap: int, same_track: bool
) -> None:
    before, after = lost_and_found(TrackerSettings(max_lost_s=5.0, reassoc_speed=reassoc_speed), gap)
    assert before == [1]
    assert after == ([1] if same_track else [2])


def test_missing_frames_are_longer_steps_not_lost_tracks() -> None:
    """At 10 fps with every other frame dropped, a walker keeps its one id and is never lost."""
    tracker = ByteTracker()
    reported = []
    for t in range(0, 60, 2):
        update = tracker.update(frame((walk((50, 300), (8, 0), t), 0.9)), t / 10.0)
        reported.append(ids(update))
    assert reported[0] == []  # confirmed 0.2 s after appearing: on the second frame at 5 fps
    assert all(r == [1] for r in reported[1:])


def test_lost_timeout_is_in_seconds_whatever_the_frame_rate() -> None:
    for fps in (10.0, 5.0):
        tracker = ByteTracker(TrackerSettings(max_lost_s=1.0))
        for k in range(5):
            tracker.update(frame((walk((50, 300), (10, 0), k), 0.9)), k / fps)
        start = 4 / fps
        ended_at = next(k for k in range(1, 100) if tracker.update(frame(), start + k / fps).ended == (1,))
        assert ended_at / fps == pytest.approx(1.0 + 1.0 / fps)


def test_the_tracker_reports_its_filtered_box_besides_the_detection() -> None:
    tracker = ByteTracker()
    rng = np.random.default_rng(3)
    for t in range(10):
        box = walk((50, 300), (6, 0), t)
        noisy = tuple(v + float(rng.normal(0, 4)) for v in box)
        update = tracker.update(frame((noisy, 0.9)))
    track = update.tracks[0]
    assert track.filtered is not None
    assert track.filtered != track.xyxy
    assert abs(track.filtered[3] - track.xyxy[3]) < 20


def test_a_burst_of_dropped_frames_is_predicted_across_by_time() -> None:
    """Frames dropped under load come in bursts: the prediction covers the time that passed, so a
    walker at 20 px a frame keeps its id across a gap of four frames (80 px, two box widths)."""
    tracker = ByteTracker()
    kept = [t for t in range(60) if t % 10 < 6]  # six frames seen, four dropped, and again
    reported = set()
    for t in kept:
        update = tracker.update(frame((walk((20, 300), (20, 0), t), 0.9)), t / 10.0)
        reported.update(ids(update))
    assert reported == {1}
