"""Pipeline CPU share with the motion gate off and on, on the sample clip and on a still scene.

    python tests/benchmarks/bench_gating.py [--video PATH] [--yolox PATH] [--still-seconds 60]

For each model, the pipeline (gate, detector, tracker, counters; not the video decoding) is timed in
process CPU seconds, not wall time, and divided by the seconds of video it covered at 10 fps: the
share of one core the pipeline takes at the agent's default rate. Scenes: every frame of the clip
(people walk through it all the time), and its first frame repeated for ``--still-seconds`` (nothing
moves). The gate-off run of each scene is the baseline measured in the same run; the table gives
the ratio on / off and how often the detector ran.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.config import LineConfig
from agent.vision.detector import Detector
from agent.vision.models import ModelSpec, default_model_dirs, resolve_model
from agent.vision.motion import BackgroundModel, MotionGate, MotionSettings
from agent.vision.pipeline import CountingRules, TrafficPipeline
from agent.vision.source import Frame

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
FPS = 10.0


def clip_frames(video: Path) -> Iterator[npt.NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(video))
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield image
    finally:
        capture.release()


def still_frames(video: Path, seconds: float) -> Iterator[npt.NDArray[np.uint8]]:
    first = next(clip_frames(video))
    for _ in range(int(seconds * FPS)):
        yield first


def pipeline_cpu(detector: Detector, frames: Iterator[npt.NDArray[np.uint8]], gated: bool) -> tuple[float, int, int]:
    """Process CPU seconds spent in the pipeline, frames processed, detector runs."""
    lines = {"a": LineConfig(a=(60, 330), b=(700, 330)), "b": LineConfig(a=(380, 120), b=(380, 560))}
    gate = MotionGate() if gated else None
    pipeline = TrafficPipeline(detector, CountingRules(lines=lines), gate=gate)
    cpu, count = 0.0, 0
    for index, image in enumerate(frames):
        frame = Frame(index, 1e9 + index / FPS, image, index / FPS)
        started = time.process_time()
        pipeline.process(frame)
        cpu += time.process_time() - started
        count += 1
    runs = gate.stats.detector_runs if gate is not None else count
    return cpu, count, runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "vtest.avi")
    parser.add_argument("--yolox", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--still-seconds", type=float, default=60.0)
    args = parser.parse_args()
    models: list[ModelSpec] = [resolve_model("ssdlite-pedestrian", None, default_model_dirs(None))]
    if args.yolox.is_file():
        models.append(resolve_model(str(args.yolox), "yolox", []))
    warm = next(clip_frames(args.video))
    print(f"pipeline CPU at {FPS:.0f} fps, 1 detector thread; % of one core = CPU s / video s * 100")
    print(f"{'model':<24}{'scene':<14}{'gate':<6}{'frames':>7}{'detector':>10}{'% core':>9}{'on/off':>8}")
    for spec in models:
        detector = Detector(spec, threads=1)
        for _ in range(5):
            detector.detect(warm)
        scenes = {
            "clip": lambda: clip_frames(args.video),
            f"still {args.still_seconds:.0f} s": lambda: still_frames(args.video, args.still_seconds),
        }
        for scene, frames in scenes.items():
            baseline = 0.0
            for gated in (False, True):
                cpu, count, runs = pipeline_cpu(detector, frames(), gated)
                share = cpu / (count / FPS) * 100
                ratio = f"{share / baseline:.3f}" if gated else ""
                baseline = baseline or share
                gate = "on" if gated else "off"
                print(f"{spec.name:<24}{scene:<14}{gate:<6}{count:>7}{runs:>10}{share:>8.2f}%{ratio:>8}")
    background = BackgroundModel(MotionSettings())
    images = list(itertools.islice(clip_frames(args.video), 200))
    started = time.process_time()
    for image in images:
        background.update(image)
    ms = (time.process_time() - started) / len(images) * 1000
    print(f"motion check alone: {ms:.3f} ms CPU per frame ({ms * FPS / 10:.2f}% of a core at {FPS:.0f} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
