"""What the counting rules change on the sample clip and cost per frame, in one run.

    python tests/benchmarks/bench_counting_rules.py [--truth tests/data/vtest_truth.toml]
        [--video PATH] [--yolox PATH] [--repeat 10]

The detector runs once per model over the whole clip; the tracker and counters are then replayed on
those detections with the rules off (no band, no grace, no stationary rule, no re-association
limit, the hold of two frames: the counting of before the rules), with each rule alone, with all
on (the defaults), and with the defaults but for the band width or the hold. For each it prints
line accuracy, event F1 and zone MAE against the truth file, scored by the same code as
``retail-agent eval``, for the tuning half of the clip (frames 0:399, where settings are chosen),
the held-out half (400:794, to check them) and the whole clip.

It also prints the foot point's jitter on the tuning half, which the default band is sized from:
the vertical foot position of every track, as a fraction of its box height, differenced twice over
consecutive frames (a walker's steady motion cancels, white noise of deviation s leaves 6 s^2 of
variance); s is estimated robustly (median absolute deviation), since a box cut by an occlusion
is not jitter a band could absorb, and also from the plain standard deviation.

Then the cost: the tracker's output is recorded once and the counting step (``count_tracks``: lines,
zones, stationary rule) is timed over it with the rules off and on, interleaved ``--repeat`` times;
likewise the tracker with and without the re-association limit. The fastest of the repeats is
shown (the machine's noise only ever adds time), with the ratio to the rules-off baseline.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import LineConfig, ZoneConfig, parse_config
from agent.evaluation import DEFAULT_TOLERANCE, FrameRange
from agent.evaluation.scores import PredictedCrossing, Section, score
from agent.evaluation.truth import Truth, load_truth
from agent.vision import tracker as tracker_module
from agent.vision.detections import Detections
from agent.vision.detector import Detector
from agent.vision.models import default_model_dirs, resolve_model
from agent.vision.pipeline import CountingRules, TrafficPipeline, tracker_settings
from agent.vision.source import parse_source, read_frames

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
FPS = 10.0
TUNING, HELD_OUT = FrameRange(0, 399), FrameRange(400, 794)

Variant = dict[str, Any]

OFF: Variant = {"band": 0.0, "grace": None, "stationary": None, "reassoc": False, "hold_s": 0.1}
"""The counting of before the rules; a hold of 0.1 s is the old two frames at 10 fps."""

VARIANTS: list[tuple[str, Variant]] = [
    ("rules off", OFF),
    ("+ band (default)", {k: v for k, v in OFF.items() if k != "band"}),
    ("+ grace 1 s", {**OFF, "grace": 1.0}),
    ("+ stationary", {**OFF, "stationary": 60.0}),
    ("+ reassoc limit", {**OFF, "reassoc": True}),
    ("+ filtered foot", {**OFF, "filtered": True}),
    ("all on (defaults)", {}),
    ("defaults, band 0", {"band": 0.0}),
    ("defaults, band 0.02", {"band": 0.02}),
    ("defaults, band 0.05", {"band": 0.05}),
    ("defaults, band 0.10", {"band": 0.10}),
    ("defaults, band 0.15", {"band": 0.15}),
    ("defaults, hold 0 s", {"hold_s": 0.0}),
    ("defaults, hold 0.1 s", {"hold_s": 0.1}),
    ("defaults, hold 0.2 s", {"hold_s": 0.2}),
]


def detect_all(detector: Detector, video: Path) -> tuple[list[Detections], tuple[int, int]]:
    detections, size = [], (0, 0)
    for frame in read_frames(parse_source(str(video)), file_start_t=0.0):
        size = (frame.image.shape[1], frame.image.shape[0])
        detections.append(detector.detect(frame.image))
    return detections, size


def replay(
    detector: Detector, truth: Truth, detections: list[Detections], size: tuple[int, int], variant: Variant
) -> tuple[Section, ...]:
    """Track and count the cached detections; score the whole clip, then the tuning and held-out halves."""
    lines: dict[str, LineConfig] = truth.line_configs()
    zones: dict[str, ZoneConfig] = truth.zone_configs()
    if "band" in variant:
        lines = {k: v.model_copy(update={"band": variant["band"]}) for k, v in lines.items()}
    if "grace" in variant:
        zones = {k: v.model_copy(update={"seen_grace_s": variant["grace"]}) for k, v in zones.items()}
    defaults = parse_config({})
    rules = CountingRules(
        lines=lines,
        zones=zones,
        hold_s=variant.get("hold_s", defaults.counting.hold_s),
        zone_min_s=defaults.counting.zone_min_s,
        stationary_s=variant.get("stationary", defaults.counting.stationary_s),
        stationary_radius=defaults.counting.stationary_radius,
        position="filtered" if variant.get("filtered") else "detection",
    )
    settings = tracker_settings(defaults.tracker, detector.spec)
    pipeline = TrafficPipeline(detector, rules, settings)
    pipeline._layout(*size)
    original: Callable[..., Any] = tracker_module.ByteTracker._reach
    if variant.get("reassoc") is False:
        tracker_module.ByteTracker._reach = lambda self, rows, dets, t: None  # type: ignore[method-assign]
    try:
        results = [pipeline.process_detections(i, i / FPS, d) for i, d in enumerate(detections)]
        results.append(pipeline.finish())
    finally:
        tracker_module.ByteTracker._reach = original  # type: ignore[method-assign]
    totals = {name: {"in": 0, "out": 0} for name in lines}
    zone_frames: dict[str, list[int]] = {name: [] for name in zones}
    crossings: list[PredictedCrossing] = []
    last = 0
    for result in results:
        # The end of the stream (index -1) reports what was still open at the last frame.
        last = result.index if result.index >= 0 else last
        for crossing in result.crossings:
            totals[crossing.line][crossing.direction] += 1
            crossings.append(PredictedCrossing(last, crossing.line, crossing.direction))
        if result.index >= 0:
            for zone in result.zones:
                zone_frames[zone.zone].append(zone.occupancy)
    whole, halves = score(truth, totals, zone_frames, crossings, DEFAULT_TOLERANCE, (TUNING, HELD_OUT))
    return (*halves, whole)


def figures(section: Section) -> str:
    events, mae = section.events, section.zone_mae
    f1 = f"{events.f1:.1%}" if events is not None else "-"
    return f"{section.line_accuracy:>7.1%} {f1:>6} {mae if mae is not None else 0.0:>5.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, default=REPO / "tests" / "data" / "vtest_truth.toml")
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "vtest.avi")
    parser.add_argument("--yolox", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--repeat", type=int, default=10, help="interleaved timed runs (the fastest is shown)")
    args = parser.parse_args()
    truth = load_truth(args.truth)
    specs = [resolve_model("ssdlite-pedestrian", None, default_model_dirs(None))]
    if args.yolox.is_file():
        specs.append(resolve_model(str(args.yolox), "yolox", []))
    for spec in specs:
        detector = Detector(spec, threads=1)
        detections, size = detect_all(detector, args.video)
        print(f"{spec.name}: {len(detections)} frames of {args.video.name}; lines / event F1 / zone MAE")
        header = "".join(f"{title:>22}" for title in (f"tuning {TUNING}", f"held out {HELD_OUT}", "whole clip"))
        print(f"  {'variant':<22}{header}   per line (in, out), whole clip")
        for name, variant in VARIANTS:
            sections = replay(detector, truth, detections, size, variant)
            row = "".join(f"{figures(s):>22}" for s in sections)
            per_line = " ".join(f"{s.name}{s.counted}" for s in sections[-1].lines)
            print(f"  {name:<22}{row}   {per_line}")
        robust, plain = foot_jitter(detector, detections[: TUNING.last + 1])
        print(f"  foot jitter on {TUNING}: {robust:.3f} of the box height (robust), {plain:.3f} (standard deviation)")
        cost(detector, truth, detections, size, args.repeat)
    return 0


def foot_jitter(detector: Detector, detections: list[Detections]) -> tuple[float, float]:
    """The deviation of the foot point's vertical position from frame to frame, in box heights."""
    tracker = tracker_module.ByteTracker(tracker_settings(parse_config({}).tracker, detector.spec))
    feet: dict[int, list[tuple[int, float, float]]] = {}
    for i, d in enumerate(detections):
        for track in tracker.update(d, i / FPS).tracks:
            feet.setdefault(track.track_id, []).append((i, track.foot[1], track.height))
    second: list[float] = []
    for rows in feet.values():
        for (i0, y0, _), (_, y1, h1), (i2, y2, _) in zip(rows, rows[1:], rows[2:], strict=False):
            if i2 - i0 == 2:
                second.append((y0 - 2 * y1 + y2) / h1)
    median = statistics.median(second)
    mad = statistics.median(abs(v - median) for v in second) * 1.4826
    return mad / math.sqrt(6), statistics.pstdev(second) / math.sqrt(6)


def cost(detector: Detector, truth: Truth, detections: list[Detections], size: tuple[int, int], repeat: int) -> None:
    """Time the counting step and the tracker with and without the rules, interleaved."""
    settings = tracker_settings(parse_config({}).tracker, detector.spec)
    tracker = tracker_module.ByteTracker(settings)
    updates = [tracker.update(d, i / FPS) for i, d in enumerate(detections)]
    off_lines = {k: v.model_copy(update={"band": 0.0}) for k, v in truth.line_configs().items()}
    off_zones = {k: v.model_copy(update={"seen_grace_s": None}) for k, v in truth.zone_configs().items()}
    rules = {
        "off": CountingRules(lines=off_lines, zones=off_zones, stationary_s=None),
        "on": CountingRules(lines=truth.line_configs(), zones=truth.zone_configs()),
    }
    counting: dict[str, list[float]] = {"off": [], "on": []}
    tracking: dict[str, list[float]] = {"off": [], "on": []}
    original: Callable[..., Any] = tracker_module.ByteTracker._reach
    for _ in range(repeat):
        for key, rule in rules.items():
            pipeline = TrafficPipeline(detector, rule, settings)
            pipeline._layout(*size)
            started = time.perf_counter()
            for i, update in enumerate(updates):
                pipeline.count_tracks(i, i / FPS, i / FPS, update.tracks, update.ended)
            counting[key].append((time.perf_counter() - started) / len(updates) * 1000)
        for key in ("off", "on"):
            if key == "off":
                tracker_module.ByteTracker._reach = lambda self, rows, dets, t: None  # type: ignore[method-assign]
            try:
                tracker = tracker_module.ByteTracker(settings)
                started = time.perf_counter()
                for i, d in enumerate(detections):
                    tracker.update(d, i / FPS)
                tracking[key].append((time.perf_counter() - started) / len(detections) * 1000)
            finally:
                tracker_module.ByteTracker._reach = original  # type: ignore[method-assign]
    for what, times in (("counting step", counting), ("tracker", tracking)):
        off, on = min(times["off"]), min(times["on"])
        print(f"  {what:<14} rules off {off:.4f} ms/frame, on {on:.4f} ms/frame, ratio {on / off:.2f}")


if __name__ == "__main__":
    sys.exit(main())
