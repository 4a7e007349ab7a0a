"""Make the INT8 person detectors from their FP32 models: static quantization with ONNX Runtime.

Each recipe below names the INT8 model (as in manifest.toml), the FP32 model it is made from, and
how it is quantized. Common to all:

- calibration on 50 frames of the sample clip ``vtest.avi`` at fixed indices (0, 15, 30, ... 735),
  fed exactly as the detector feeds the model (``agent.vision.detector.yolox_input`` /
  ``ssd_input``);
- QDQ format (QuantizeLinear/DequantizeLinear pairs around INT8 operators, which ONNX Runtime fuses
  into integer kernels), UINT8 activations, INT8 weights with one scale per output channel;
- percentile calibration (99.999 %);
- opset raised to 13 first where the model is older (per-channel DequantizeLinear needs it).

Measured with ``retail-agent eval`` on tests/data/vtest_truth.toml (one crossing is about 0.9 points
of line accuracy): one weight scale per tensor instead of per channel cost the SSD 3.5 more points
(87.9 % against 91.4 %); MinMax calibration instead of percentile cost the SSD 2.6-4.3 points and
YOLOX-Nano 1.7; keeping YOLOX-Nano's prediction convolutions in float, or the Concat, Reshape and
Transpose after them, did not help (96.6 % and 95.7 % against 96.6 % with the frames 0, 16, ...).
The calibration frames matter by about two crossings: YOLOX-Nano INT8 scores 98.3 % with these
frames, 96.6 % with 50 frames at 0, 16, ... 784 or 100 at 0, 8, ... 792.

The output is deterministic: the same FP32 file, clip and library versions give the same bytes, so
the printed sha256 is the one in manifest.toml (the pinned hashes were made with onnx 1.23.2 and
onnxruntime 1.32.0). The script says whether its result matches the manifest entry.

Usage::

    python models/quantize.py yolox-nano-int8 --fp32 PATH/yolox_nano.onnx
    python models/quantize.py ssdlite-pedestrian-int8 --out /tmp/ssd_int8.onnx

The INT8 file goes to STATE_DIR/models (where the agent looks for models first) unless ``--out``
says otherwise. ``--video`` gives the clip (default: the sample clip as ``retail-agent demo`` finds
it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(HERE.parent))

from agent.config import user_state_dir  # noqa: E402
from agent.sample import find_sample  # noqa: E402
from agent.vision.detector import YOLOX_DEFAULT_SIZE, ssd_input, yolox_input  # noqa: E402
from agent.vision.models import Family, ModelError, file_sha256, load_manifest, resolve_model  # noqa: E402

CALIBRATION_FRAMES = tuple(range(0, 750, 15))
QDQ_OPSET = 13


@dataclass(frozen=True)
class Recipe:
    """How one INT8 model is made from its FP32 model."""

    name: str  # the INT8 model's manifest name
    fp32: str  # the FP32 model's manifest name
    fp32_sha256: str  # the FP32 file the pinned INT8 sha256 was made from
    file: str
    family: Family
    # None quantizes every operator ONNX Runtime can; ["Conv"] leaves the rest (pre- and
    # post-processing, loops) in float.
    op_types: Sequence[str] | None = None
    # Conv nodes whose name contains one of these stay in float.
    exclude: Sequence[str] = field(default_factory=tuple)


RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="yolox-nano-int8",
            fp32="yolox-nano",
            # The ONNX export the project's measurements use (same weights and detections as the
            # release file yolox-nano pins, but different bytes, so a different INT8 file).
            fp32_sha256="695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
            file="yolox_nano_int8.onnx",
            family="yolox",
        ),
        Recipe(
            name="ssdlite-pedestrian-int8",
            fp32="ssdlite-pedestrian",
            fp32_sha256="9fa30ba1bd4bb3095cfe4f8af70bc260f0e0e90fd85847afe6b1fc4375de13f6",
            file="ssdlite_mobilenet_v2_pedestrian_int8.onnx",
            family="ssd",
            # Only the convolutions carry the compute; the TensorFlow pre-processing loop and the NMS
            # loop stay in float, and so do the 24 convolutions of the box predictors (the scores
            # and box offsets): with them INT8 the SSD lost 0.8 points more.
            op_types=("Conv",),
            exclude=("BoxPredictor_",),
        ),
    )
}


def read_frames(video: Path, indices: Sequence[int] = CALIBRATION_FRAMES) -> list[npt.NDArray[np.uint8]]:
    """The clip's frames at ``indices`` (BGR), read in order; an error if the clip is shorter."""
    wanted = set(indices)
    capture = cv2.VideoCapture(str(video))
    frames: list[npt.NDArray[np.uint8]] = []
    index = 0
    try:
        while len(frames) < len(wanted):
            ok, image = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append(image)
            index += 1
    finally:
        capture.release()
    if len(frames) < len(wanted):
        raise ValueError(f"{video}: {index} frames, calibration needs frame {max(wanted)}")
    return frames


class _Frames(CalibrationDataReader):  # type: ignore[misc]
    """Calibration inputs, one frame at a time, as the detector builds them."""

    def __init__(self, input_name: str, family: Family, frames: Sequence[npt.NDArray[np.uint8]]) -> None:
        self._input = input_name
        self._family = family
        self._frames: Iterator[npt.NDArray[np.uint8]] = iter(frames)

    def get_next(self) -> dict[str, npt.NDArray[np.generic]] | None:
        frame = next(self._frames, None)
        if frame is None:
            return None
        if self._family == "yolox":
            blob, _ = yolox_input(frame, YOLOX_DEFAULT_SIZE)
            return {self._input: blob}
        return {self._input: ssd_input(frame)}


def quantize(recipe: Recipe, fp32: Path, out: Path, frames: Sequence[npt.NDArray[np.uint8]]) -> None:
    """Write the INT8 model of ``recipe`` made from the FP32 file ``fp32`` to ``out``."""
    model = onnx.load(str(fp32))
    default_domain = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if default_domain < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    excluded = [
        node.name
        for node in model.graph.node
        if node.op_type == "Conv" and any(part in node.name for part in recipe.exclude)
    ]
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        source = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(source))
        # ONNX Runtime's own graph optimisation and shape inference first, as its quantization tools
        # recommend (the SSD scores the same with or without it: 92.2 %).
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            _Frames(model.graph.input[0].name, recipe.family, frames),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(recipe.op_types) if recipe.op_types is not None else None,
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(RECIPES), help="the INT8 model to make")
    parser.add_argument("--fp32", type=Path, help="the FP32 ONNX file (default: the manifest's, found as --model is)")
    parser.add_argument("--video", type=Path, help="the sample clip vtest.avi (default: found as the demo finds it)")
    parser.add_argument("--out", type=Path, help="where to write the INT8 file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    recipe = RECIPES[args.model]
    try:
        fp32 = args.fp32 or resolve_model(recipe.fp32, recipe.family, [user_state_dir() / "models", HERE]).path
    except ModelError as exc:
        parser.error(f"{exc}; pass the FP32 file with --fp32")
    if file_sha256(fp32) != recipe.fp32_sha256:
        print(f"note: {fp32} is not the FP32 file the manifest's INT8 hash was made from ({recipe.fp32_sha256})")
    video = args.video or find_sample(user_state_dir() / "sample")
    out: Path = args.out or user_state_dir() / "models" / recipe.file
    out.parent.mkdir(parents=True, exist_ok=True)
    quantize(recipe, fp32, out, read_frames(video))
    sha256, size = file_sha256(out), out.stat().st_size
    print(f"{sha256}  {size:>9}  {out}")
    entry = load_manifest().get(recipe.name)
    if entry is None:
        print(f"{recipe.name} has no manifest entry")
    elif (entry.sha256, entry.size) == (sha256, size):
        print(f"matches the manifest entry {recipe.name}")
    else:
        print(
            f"differs from the manifest entry {recipe.name} ({entry.sha256}, {entry.size} bytes): the agent "
            f"refuses it under that name; use it by path with --family {recipe.family}"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
