"""Motion-gated inference: the gate's decisions, the background model, and the gate on real frames."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from agent.config import AgentConfig, ConfigError, parse_config
from agent.vision.detections import Detections
from agent.vision.detector import Detector
from agent.vision.models import default_model_dirs, resolve_model
from agent.vision.motion import BackgroundModel, GateDecisions, MotionGate, MotionSettings, Reason
from agent.vision.pipeline import build_pipeline
from agent.vision.source import Frame

FPS = 10.0

# ------------------------------------------------------------------------------ decisions (pure)


def test_motion_runs_the_detector_on_every_frame() -> None:
    gate = GateDecisions(MotionSettings(keepalive_s=5.0))
    for i in range(20):
        assert gate.decide(i / FPS, motion=True) is Reason.MOTION
        gate.record(i / FPS, ran=True, people=0)


def test_still_empty_scene_runs_only_at_the_keepalive_rate() -> None:
    gate = GateDecisions(MotionSettings(keepalive_s=2.0))
    runs = []
    for i in range(100):  # 10 s at 10 fps
        t = i / FPS
        reason = gate.decide(t, motion=False)
        gate.record(t, ran=reason is not None, people=0)
        if reason is not None:
            assert reason is Reason.KEEPALIVE
            runs.append(i)
    assert runs == [0, 20, 40, 60, 80]


def test_people_in_view_keep_it_running_until_they_settle() -> None:
    gate = GateDecisions(MotionSettings(keepalive_s=10.0, settle_s=0.3))
    assert gate.decide(0.0, motion=True) is Reason.MOTION
    gate.record(0.0, ran=True, people=2)
    reasons = []
    for i in range(1, 8):
        reason = gate.decide(i / FPS, motion=False)
        gate.record(i / FPS, ran=reason is not None, people=2)
        reasons.append(reason)
    assert reasons == [Reason.TRACKING] * 3 + [None] * 4


@pytest.mark.parametrize("fps", [10.0, 5.0, 2.5])
def test_settling_lasts_the_same_time_whatever_the_frame_rate(fps: float) -> None:
    gate = GateDecisions(MotionSettings(keepalive_s=10.0, settle_s=0.4))
    gate.decide(0.0, motion=True)
    gate.record(0.0, ran=True, people=1)
    running = []
    for i in range(1, int(2 * fps)):
        reason = gate.decide(i / fps, motion=False)
        gate.record(i / fps, ran=reason is not None, people=1)
        if reason is Reason.TRACKING:
            running.append(i / fps)
    assert running and max(running) == pytest.approx(0.4)


def test_nobody_in_view_after_motion_skips_at_once() -> None:
    gate = GateDecisions(MotionSettings(keepalive_s=10.0, settle_s=0.3))
    gate.decide(0.0, motion=True)
    gate.record(0.0, ran=True, people=0)
    assert gate.decide(0.1, motion=False) is None


def test_motion_again_restarts_the_settling() -> None:
    gate = GateDecisions(MotionSettings(keepalive_s=10.0, settle_s=0.1))
    gate.decide(0.0, motion=True)
    gate.record(0.0, ran=True, people=1)
    assert gate.decide(0.1, motion=False) is Reason.TRACKING
    gate.record(0.1, ran=True, people=1)
    assert gate.decide(0.2, motion=False) is None
    gate.record(0.2, ran=False, people=1)
    assert gate.decide(0.3, motion=True) is Reason.MOTION
    gate.record(0.3, ran=True, people=1)
    assert gate.decide(0.4, motion=False) is Reason.TRACKING


def test_keepalive_counts_from_the_last_run_of_any_reason() -> None:
    gate = GateDecisions(MotionSettings(keepalive_s=1.0, settle_s=0.0))
    gate.decide(0.0, motion=False)
    gate.record(0.0, ran=True, people=0)
    gate.decide(0.5, motion=True)
    gate.record(0.5, ran=True, people=0)
    assert gate.decide(1.2, motion=False) is None
    gate.record(1.2, ran=False, people=0)
    assert gate.decide(1.5, motion=False) is Reason.KEEPALIVE


def test_a_clock_going_back_runs_the_detector() -> None:
    gate = GateDecisions(MotionSettings(keepalive_s=2.0))
    gate.decide(100.0, motion=False)
    gate.record(100.0, ran=True, people=0)
    assert gate.decide(5.0, motion=False) is Reason.KEEPALIVE


@pytest.mark.parametrize(
    ("field", "value"),
    [("keepalive_s", 0.0), ("width", 8), ("threshold", 0), ("min_area", 1.0), ("learning_rate", 0.0)],
)
def test_bad_settings_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        MotionSettings(**{field: value})


# ------------------------------------------------------------------------------ background model


def grey_frame(value: int, size: tuple[int, int] = (120, 160)) -> npt.NDArray[np.uint8]:
    return np.full((*size, 3), value, np.uint8)


def test_background_sees_a_moving_square_and_not_a_still_picture() -> None:
    model = BackgroundModel(MotionSettings())
    rng = np.random.default_rng(1)
    still = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    assert model.update(still) == 1.0  # nothing to compare with yet
    assert model.update(still.copy()) == 0.0
    moved = still.copy()
    moved[100:160, 100:140] = 255 - moved[100:160, 100:140]
    share = model.update(moved)
    assert 0.02 < share < 0.2


def test_background_learns_a_change_that_stays() -> None:
    model = BackgroundModel(MotionSettings(learning_rate=0.2))
    model.update(grey_frame(50))
    shares = [model.update(grey_frame(120)) for _ in range(30)]
    assert shares[0] == 1.0
    assert shares[-1] == 0.0


def test_a_new_frame_size_starts_the_background_again() -> None:
    model = BackgroundModel(MotionSettings())
    model.update(grey_frame(50))
    model.update(grey_frame(50))
    assert model.update(grey_frame(50, (240, 320))) == 1.0


# ------------------------------------------------------------------------------ real frames


def read_frames(video: Path, count: int) -> list[npt.NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < count:
        ok, image = capture.read()
        assert ok, f"{video} has fewer than {count} frames"
        frames.append(image)
    capture.release()
    return frames


class CountingDetector:
    """The real default detector, counting its runs."""

    def __init__(self) -> None:
        self.detector = Detector(resolve_model("ssdlite-pedestrian", None, default_model_dirs(None)))
        self.runs = 0

    def __call__(self, frame: npt.NDArray[np.uint8]) -> Detections:
        self.runs += 1
        return self.detector.detect(frame)


def test_a_static_scene_runs_the_detector_only_at_the_keepalive_rate(vtest_path: Path) -> None:
    settings = MotionSettings(keepalive_s=2.0, settle_s=0.5)
    gate, detector = MotionGate(settings), CountingDetector()
    first = read_frames(vtest_path, 1)[0]
    seconds = 60
    for i in range(int(seconds * FPS)):
        detections = gate.detect(first, i / FPS, detector)
        gate.observe(people=int(len(detections) > 0))
    # First frame (no background yet), settling while people are in view, then one run per keep-alive.
    allowed = 1 + round(settings.settle_s * FPS) + math.ceil(seconds / settings.keepalive_s)
    assert detector.runs <= allowed
    assert gate.stats.keepalive >= seconds / settings.keepalive_s - 2
    assert gate.stats.motion == 1
    assert gate.stats.describe().startswith(f"detector ran on {detector.runs} of 600 frames (motion 1,")


def test_a_moving_scene_runs_the_detector_on_every_frame(vtest_path: Path) -> None:
    gate, detector = MotionGate(), CountingDetector()
    frames = read_frames(vtest_path, 40)
    for i, image in enumerate(frames):
        gate.detect(image, i / FPS, detector)
        gate.observe(people=0)
    assert detector.runs == len(frames)
    assert gate.stats.motion == len(frames)


def test_people_standing_still_stay_tracked_while_the_detector_sleeps(vtest_path: Path) -> None:
    """On a still picture of people the pipeline keeps them in view from replayed detections."""
    pipeline = build_pipeline(parse_config({"motion": {"keepalive_s": 2.0}}))
    first = read_frames(vtest_path, 1)[0]
    people = [pipeline.process(Frame(i, 1000.0 + i / FPS, first, i / FPS)).people for i in range(100)]
    assert pipeline.gate is not None
    assert pipeline.gate.stats.detector_runs < 15
    assert min(people[10:]) > 0
    assert len(set(people[10:])) == 1


def test_motion_config_is_on_by_default_and_errors_name_the_key() -> None:
    assert AgentConfig().motion.enabled
    assert build_pipeline(parse_config({"motion": {"enabled": False}})).gate is None
    with pytest.raises(ConfigError, match="motion -> keepalive_s"):
        parse_config({"motion": {"keepalive_s": 0}})
