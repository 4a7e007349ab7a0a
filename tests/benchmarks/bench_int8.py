"""Each detector in FP32 against its INT8 model from models/quantize.py: line accuracy and speed.

    python tests/benchmarks/bench_int8.py [--video PATH] [--yolox PATH] [--frames 200] [--keep DIR]

For each recipe of models/quantize.py (the SSD and YOLOX-Nano; YOLOX-Nano only when its export is
on this machine) the benchmark makes the INT8 model from the FP32 file exactly as the script does,
then scores both with `retail-agent eval`'s code on tests/data/vtest_truth.toml (the whole clip and
its halves, frames 0-399 and 400-794) and times the detector on the clip's first ``--frames``
frames (ms/frame, wall and CPU, 1 and 2 threads), FP32 and INT8 alternating so that both see the
same load; FP32 is the baseline of the same run. It says whether each INT8 file matches its
manifest entry. ``--keep DIR`` keeps the INT8 files. Needs the dev extras (onnx).

The calibration frames come from the scored clip (the only footage here), and one crossing more or
less moves the whole clip's line accuracy by about 0.9 points.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import numpy.typing as npt

from agent.config import AgentConfig
from agent.evaluation import FrameRange, evaluate_file
from agent.geometry_args import with_family
from agent.sample import shared_dir
from agent.vision.detector import Detector
from agent.vision.models import file_sha256, load_manifest, resolve_model

REPO = Path(__file__).resolve().parents[2]
TRUTH = REPO / "tests" / "data" / "vtest_truth.toml"
HALVES = (FrameRange.parse("0:399"), FrameRange.parse("400:794"))


def load_quantize() -> ModuleType:
    """models/quantize.py as a module (models/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("quantize", REPO / "models" / "quantize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def read_frames(video: Path, limit: int) -> list[npt.NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def detector_ms(path: Path, family: str, frames: list[npt.NDArray[np.uint8]], threads: int) -> tuple[float, float]:
    """Mean wall and CPU ms per frame of Detector.detect."""
    detector = Detector(resolve_model(str(path), family, []), threads=threads)
    for image in frames[:5]:
        detector.detect(image)
    walls, cpu = [], time.process_time()
    for image in frames:
        started = time.perf_counter()
        detector.detect(image)
        walls.append(time.perf_counter() - started)
    return statistics.mean(walls) * 1000, (time.process_time() - cpu) / len(frames) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=shared_dir() / "data" / "vtest.avi")
    parser.add_argument("--yolox", type=Path, default=shared_dir() / "models" / "yolox_nano.onnx")
    parser.add_argument("--frames", type=int, default=200, help="frames timed per model and thread count")
    parser.add_argument("--keep", type=Path, help="keep the INT8 files in this folder")
    args = parser.parse_args()
    quantize = load_quantize()
    manifest = load_manifest()
    fp32_files = {"ssdlite-pedestrian": resolve_model("ssdlite-pedestrian").path, "yolox-nano": args.yolox}
    calibration = quantize.read_frames(args.video)
    timed = read_frames(args.video, args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for recipe in quantize.RECIPES.values():
            fp32 = fp32_files[recipe.fp32]
            if not fp32.is_file():
                print(f"{recipe.fp32}: no FP32 file at {fp32}; skipped (retail-agent models fetch {recipe.fp32})")
                continue
            int8 = out_dir / recipe.file
            started = time.perf_counter()
            quantize.quantize(recipe, fp32, int8, calibration)
            entry = manifest.get(recipe.name)
            verdict = (
                "no manifest entry"
                if entry is None
                else "matches its manifest entry"
                if entry.sha256 == file_sha256(int8)
                else "DIFFERS from its manifest entry"
            )
            print(f"{recipe.name}: quantized in {time.perf_counter() - started:.0f} s, {verdict}")
            config = with_family(AgentConfig(), recipe.family)
            models = {"FP32": fp32, "INT8": int8}
            scores = {
                label: evaluate_file(config, TRUTH, args.video, str(path), ranges=HALVES)
                for label, path in models.items()
            }
            speed: dict[tuple[str, int], tuple[float, float]] = {}
            for threads in (1, 2):
                order = ("FP32", "INT8") if threads == 1 else ("INT8", "FP32")
                for label in order:
                    speed[label, threads] = detector_ms(models[label], recipe.family, timed, threads)
            for label, path in models.items():
                result = scores[label]
                halves = [section.line_accuracy * 100 for section in result.ranges]
                rows.append(
                    (
                        f"{recipe.fp32} {label}",
                        path.stat().st_size / 1e6,
                        result.line_accuracy * 100,
                        *halves,
                        *speed[label, 1],
                        *speed[label, 2],
                        speed[label, 1][0] / speed["FP32", 1][0],
                        speed[label, 2][0] / speed["FP32", 2][0],
                    )
                )
    print(
        f"{'model':<24}{'MB':>6}{'acc %':>7}{'0-399':>7}{'400-794':>8}"
        f"{'1t wall':>9}{'1t CPU':>8}{'2t wall':>9}{'2t CPU':>8}{'vs FP32 1t/2t':>15}"
    )
    for name, size, acc, first, second, wall1, cpu1, wall2, cpu2, ratio1, ratio2 in rows:
        print(
            f"{name:<24}{size:>6.1f}{acc:>7.1f}{first:>7.1f}{second:>8.1f}"
            f"{wall1:>9.1f}{cpu1:>8.1f}{wall2:>9.1f}{cpu2:>8.1f}{ratio1:>9.2f} /{ratio2:>5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
