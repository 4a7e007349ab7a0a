"""Compare SSDLite variants against YOLOX-Nano on the sample clip.

Reference boxes: YOLOX-Nano detections with score >= 0.5 (a proxy for ground truth: it misses
people too, so "precision" counts some real people as false). For each SSD variant (the shipped
graph, 2x2 tiles, and every ``ssdlite_mobilenet_v2_pedestrian_<S>.onnx`` with a larger internal
resize) it reports recall and precision at IoU 0.5 for a few score thresholds, and the mean
milliseconds per frame of ``Detector.detect`` (one thread unless ``--threads``).

Usage::

    python models/measure_ssdlite.py [--every 5] [--video PATH] [--yolox PATH] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from agent.vision.detections import Detections  # noqa: E402
from agent.vision.detector import Detector, box_iou  # noqa: E402
from agent.vision.models import resolve_model  # noqa: E402

SHARED = Path(os.environ.get("RETAIL_SHARED", HERE.parent.parent / "shared"))
REFERENCE_SCORE = 0.5
MATCH_IOU = 0.5
FLOOR = 0.05
THRESHOLDS = (0.3, 0.4, 0.5)


@dataclass
class Tally:
    matched: int = 0
    predicted: int = 0
    reference: int = 0

    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 0.0

    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else 0.0


def frames(video: Path, every: int) -> Iterator[npt.NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(video))
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % every == 0:
                yield frame
            index += 1
    finally:
        capture.release()


def match(reference: npt.NDArray[np.float32], found: Detections) -> int:
    """Greedy one-to-one matching by score at IoU >= MATCH_IOU; the number of matches."""
    free = np.ones(len(reference), bool)
    hits = 0
    for i in np.argsort(-found.scores, kind="stable"):
        if not free.any():
            break
        ious = box_iou(found.xyxy[i], reference)
        ious[~free] = 0
        best = int(np.argmax(ious))
        if ious[best] >= MATCH_IOU:
            free[best] = False
            hits += 1
    return hits


def above(found: Detections, threshold: float) -> Detections:
    keep = found.scores >= threshold
    return Detections(found.xyxy[keep], found.scores[keep])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "vtest.avi")
    parser.add_argument("--yolox", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--every", type=int, default=5, help="use every Nth frame")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    threads = args.threads

    plain = HERE / "ssdlite_mobilenet_v2_pedestrian.onnx"
    variants: dict[str, Detector] = {
        "ssd 300 (shipped)": Detector(resolve_model(str(plain)), threads, score_threshold=FLOOR),
        "ssd 300, 2x2 tiles": Detector(resolve_model(str(plain)), threads, score_threshold=FLOOR, tiles=2),
    }
    for path in sorted(HERE.glob("ssdlite_mobilenet_v2_pedestrian_*.onnx")):
        size = path.stem.rsplit("_", 1)[1]
        spec = resolve_model(str(path), "ssd")
        variants[f"ssd resize {size}"] = Detector(spec, threads, score_threshold=FLOOR)
    reference_model = Detector(resolve_model(str(args.yolox), "yolox"), threads, score_threshold=0.1)

    tallies = {(name, t): Tally() for name in variants for t in THRESHOLDS}
    spent = dict.fromkeys([*variants, "yolox-nano (reference)"], 0.0)
    count = 0
    for frame in frames(args.video, args.every):
        count += 1
        start = time.perf_counter()
        reference = reference_model.detect(frame)
        spent["yolox-nano (reference)"] += time.perf_counter() - start
        truth = above(reference, REFERENCE_SCORE).xyxy
        for name, detector in variants.items():
            start = time.perf_counter()
            found = detector.detect(frame)
            spent[name] += time.perf_counter() - start
            for threshold in THRESHOLDS:
                kept = above(found, threshold)
                tally = tallies[(name, threshold)]
                tally.reference += len(truth)
                tally.predicted += len(kept)
                tally.matched += match(truth, kept)

    references = tallies[(next(iter(variants)), THRESHOLDS[0])].reference
    print(f"{args.video.name}: {count} frames (every {args.every}th), {references} reference boxes")
    print(f"(YOLOX-Nano score >= {REFERENCE_SCORE}), match IoU >= {MATCH_IOU}, {threads} thread(s)\n")
    header = "| variant | ms/frame | " + " | ".join(f"R@{t} | P@{t}" for t in THRESHOLDS) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(THRESHOLDS)))
    for name in variants:
        cells = [f"{tallies[(name, t)].recall():.3f} | {tallies[(name, t)].precision():.3f}" for t in THRESHOLDS]
        print(f"| {name} | {1000 * spent[name] / count:.1f} | " + " | ".join(cells) + " |")
    print(f"| yolox-nano (reference) | {1000 * spent['yolox-nano (reference)'] / count:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
