"""YOLOX-Nano FP32 against a static INT8 quantization of it: accuracy on the truth file and speed.

    python tests/benchmarks/bench_int8.py [--video PATH] [--yolox PATH] [--calibration 50]
        [--method percentile|minmax|entropy] [--out FILE]

Quantizes the model with ONNX Runtime's tools (opset raised to 13, QDQ format, per-channel INT8
weights, UINT8 activations) calibrated on ``--calibration`` frames spread over the sample clip
(the only footage here, so the calibration frames are also among the scored ones), then scores
both models with `retail-agent eval`'s code on tests/data/vtest_truth.toml and times the detector
(ms/frame, wall and CPU, 1 and 2 threads) on the same frames, FP32 being the baseline of the same
run. ``--out`` keeps the quantized file. Needs the dev extras (onnx).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnx
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from agent.config import AgentConfig
from agent.evaluation import evaluate_file
from agent.geometry_args import with_family
from agent.vision.detector import YOLOX_DEFAULT_SIZE, Detector, letterbox
from agent.vision.models import resolve_model

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
TRUTH = REPO / "tests" / "data" / "vtest_truth.toml"
METHODS = {
    "percentile": CalibrationMethod.Percentile,
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
}


def read_frames(video: Path, every: int = 1, limit: int | None = None) -> list[npt.NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(video))
    frames, index = [], 0
    while limit is None or len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(image)
        index += 1
    capture.release()
    return frames


class Calibration(CalibrationDataReader):  # type: ignore[misc]
    """Letterboxed frames, as the detector feeds them to the model."""

    def __init__(self, input_name: str, frames: list[npt.NDArray[np.uint8]]) -> None:
        self.input_name = input_name
        self.frames = iter(frames)

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        frame = next(self.frames, None)
        if frame is None:
            return None
        image, _ = letterbox(frame, YOLOX_DEFAULT_SIZE)
        return {self.input_name: np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)}


def quantize(model: Path, out: Path, frames: list[npt.NDArray[np.uint8]], method: str) -> None:
    graph = onnx.load(str(model))
    if graph.opset_import[0].version < 13:  # per-channel DequantizeLinear needs opset 13
        graph = version_converter.convert_version(graph, 13)
    with tempfile.TemporaryDirectory() as tmp:
        raised, prepared = Path(tmp) / "opset13.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(graph, str(raised))
        quant_pre_process(str(raised), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Calibration(graph.graph.input[0].name, frames),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=METHODS[method],
        )


def detector_ms(path: Path, frames: list[npt.NDArray[np.uint8]], threads: int) -> tuple[float, float]:
    """Mean wall and CPU ms per frame."""
    detector = Detector(resolve_model(str(path), "yolox", []), threads=threads)
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
    parser.add_argument("--video", type=Path, default=SHARED / "data" / "vtest.avi")
    parser.add_argument("--yolox", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--calibration", type=int, default=50, help="calibration frames")
    parser.add_argument("--method", choices=sorted(METHODS), default="percentile")
    parser.add_argument("--out", type=Path, help="keep the quantized model here")
    args = parser.parse_args()
    if not args.yolox.is_file():
        print(f"no YOLOX-Nano export at {args.yolox} (retail-agent models fetch yolox-nano)", file=sys.stderr)
        return 2
    total = len(read_frames(args.video))
    calibration = read_frames(args.video, every=max(1, total // args.calibration), limit=args.calibration)
    with tempfile.TemporaryDirectory() as tmp:
        int8 = args.out or Path(tmp) / "yolox_nano_int8.onnx"
        started = time.perf_counter()
        quantize(args.yolox, int8, calibration, args.method)
        print(f"quantized on {len(calibration)} frames ({args.method}) in {time.perf_counter() - started:.1f} s")
        models = {"FP32": args.yolox, "INT8": int8}
        config = with_family(AgentConfig(), "yolox")
        frames = read_frames(args.video, limit=200)
        print(f"{'model':<6}{'MB':>6}{'accuracy':>10}{'threads':>9}{'ms wall':>9}{'ms CPU':>8}{'vs FP32':>9}")
        baseline: dict[int, float] = {}
        for label, path in models.items():
            accuracy = evaluate_file(config, TRUTH, args.video, str(path)).line_accuracy * 100
            for threads in (1, 2):
                wall, cpu = detector_ms(path, frames, threads)
                baseline.setdefault(threads, wall)
                size = path.stat().st_size / 1e6
                ratio = wall / baseline[threads]
                print(f"{label:<6}{size:>6.1f}{accuracy:>9.1f}%{threads:>9}{wall:>9.1f}{cpu:>8.1f}{ratio:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
