"""Detector and pipeline speed on the sample clip, measured in one run.

    python tests/benchmarks/bench_pipeline.py [--frames 200] [--video PATH] [--yolox PATH]

Prints detector ms/frame for each model at 1 and 2 intra-op threads, the end-to-end pipeline rate
on the same frames read from the file, and the ratio pipeline / detector-only (the baseline measured
in the same run, so the ratio holds on a noisy machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from agent.config import LineConfig
from agent.vision.count import count_video
from agent.vision.detector import Detector
from agent.vision.models import ModelSpec, default_model_dirs, resolve_model
from agent.vision.pipeline import CountingRules, TrafficPipeline
from agent.vision.source import parse_source

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def load_frames(video: Path, limit: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def detector_ms(spec: ModelSpec, frames: list[np.ndarray], threads: int, tiles: int = 1) -> float:
    detector = Detector(spec, threads=threads, tiles=tiles)
    for image in frames[:5]:
        detector.detect(image)
    times = []
    for image in frames:
        started = time.perf_counter()
        detector.detect(image)
        times.append(time.perf_counter() - started)
    return statistics.mean(times) * 1000


def pipeline_ms(spec: ModelSpec, video: Path, frames: int) -> tuple[float, int]:
    """Mean wall time per frame of the whole count path (decode, detect, track, count) on the file."""
    lines = {"a": LineConfig(a=(60, 330), b=(700, 330)), "b": LineConfig(a=(380, 120), b=(380, 560))}
    detector = Detector(spec, threads=1)
    for image in load_frames(video, 5):  # the same warm-up as the detector-only runs
        detector.detect(image)
    pipeline = TrafficPipeline(detector, CountingRules(lines=lines))
    report = count_video(parse_source(str(video)), pipeline, max_frames=frames)
    return report.seconds / report.frames * 1000, report.frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "vtest.avi")
    parser.add_argument("--yolox", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    args = parser.parse_args()
    frames = load_frames(args.video, args.frames)
    models = [resolve_model("ssdlite-pedestrian", None, default_model_dirs(None))]
    if args.yolox.is_file():
        models.append(resolve_model(str(args.yolox), None, []))
    print(f"{len(frames)} frames of {args.video.name}, {frames[0].shape[1]}x{frames[0].shape[0]}")
    print(f"{'model':<28}{'threads':>8}{'ms/frame':>10}")
    baseline: dict[str, float] = {}
    for spec in models:
        for threads in (1, 2):
            ms = detector_ms(spec, frames, threads)
            if threads == 1:
                baseline[spec.name] = ms
            print(f"{spec.name:<28}{threads:>8}{ms:>10.1f}")
    print()
    print(f"{'pipeline (1 thread)':<28}{'ms/frame':>10}{'fps':>8}{'detector':>10}{'ratio':>8}")
    for spec in models:
        ms, _ = pipeline_ms(spec, args.video, len(frames))
        ratio = ms / baseline[spec.name]
        print(f"{spec.name:<28}{ms:>10.1f}{1000 / ms:>8.1f}{baseline[spec.name]:>10.1f}{ratio:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
