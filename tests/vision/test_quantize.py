"""models/quantize.py: static INT8 quantization of the person detectors, and the INT8 manifest entries."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.vision.detector import YOLOX_DEFAULT_SIZE, Detector, yolox_input
from agent.vision.models import file_sha256, load_manifest, resolve_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quantize() -> Iterator[ModuleType]:
    """models/quantize.py as a module (models/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("quantize", REPO / "models" / "quantize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def two_convs(path: Path) -> Path:
    """A small YOLOX-shaped float model at opset 11: 1x3x416x416 in, Conv (8 ch), ReLU, Conv (4 ch) out."""
    rng = np.random.default_rng(7)
    # Output channels of very different ranges, which per-channel scales keep apart.
    first = (rng.normal(size=(8, 3, 3, 3)) * np.geomspace(0.001, 0.1, 8)[:, None, None, None]).astype(np.float32)
    second = (rng.normal(size=(4, 8, 1, 1)) * 0.5).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w1"], ["a"], name="backbone_conv", strides=[4, 4]),
            helper.make_node("Relu", ["a"], ["b"], name="relu"),
            helper.make_node("Conv", ["b", "w2"], ["output"], name="head_conv"),
        ],
        "two-convs",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 416, 416])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(first, "w1"), numpy_helper.from_array(second, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8) for _ in range(count)]


def _run(path: Path, image: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    blob, _ = yolox_input(image, YOLOX_DEFAULT_SIZE)
    (out,) = session.run(None, {"images": blob})
    return np.asarray(out)


def test_quantizing_a_small_model_gives_per_channel_int8_qdq_close_to_float(
    quantize: ModuleType, tmp_path: Path
) -> None:
    fp32 = two_convs(tmp_path / "fp32.onnx")
    recipe = quantize.Recipe(name="t", fp32="t", fp32_sha256="0" * 64, file="t.onnx", family="yolox")
    out = tmp_path / "int8.onnx"
    quantize.quantize(recipe, fp32, out, frames(6))

    model = onnx.load(str(out))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Conv") == 2 and "QuantizeLinear" in ops and "DequantizeLinear" in ops
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    int8 = [w for w in weights.values() if w.dtype == np.int8 and w.ndim == 4]
    assert sorted(w.shape[0] for w in int8) == [4, 8], "both convolutions' weights are INT8"
    scales = [w for name, w in weights.items() if name.endswith("_scale") and w.size == 8]
    assert scales, "one weight scale per output channel"
    assert scales[0].max() / scales[0].min() > 10

    image = frames(7)[-1]  # not one of the calibration frames
    expected, actual = _run(fp32, image), _run(out, image)
    assert np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()


def test_quantizing_is_repeatable_and_excluded_convolutions_stay_float(quantize: ModuleType, tmp_path: Path) -> None:
    fp32 = two_convs(tmp_path / "fp32.onnx")
    recipe = quantize.Recipe(name="t", fp32="t", fp32_sha256="0" * 64, file="t.onnx", family="yolox", exclude=("head",))
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    quantize.quantize(recipe, fp32, first, frames(4))
    quantize.quantize(recipe, fp32, second, frames(4))
    assert first.read_bytes() == second.read_bytes()
    model = onnx.load(str(first))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    (head,) = (node for node in model.graph.node if node.name == "head_conv")
    assert weights[head.input[1]].dtype == np.float32
    assert any(w.dtype == np.int8 and w.shape == (8, 3, 3, 3) for w in weights.values())


def test_calibration_frames_are_read_at_their_indices(quantize: ModuleType, vtest_clip) -> None:  # type: ignore[no-untyped-def]
    clip = vtest_clip(40)
    got = quantize.read_frames(clip, (3, 17))
    capture = cv2.VideoCapture(str(clip))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 17)
    ok, frame = capture.read()
    capture.release()
    assert ok and len(got) == 2
    assert np.array_equal(got[1], frame) and not np.array_equal(got[0], frame)
    with pytest.raises(ValueError, match="calibration needs frame 50"):
        quantize.read_frames(clip, (0, 50))


def test_every_recipe_names_a_manifest_model_of_its_family(quantize: ModuleType) -> None:
    manifest = load_manifest()
    for recipe in quantize.RECIPES.values():
        assert manifest[recipe.fp32].family == recipe.family
        if recipe.name in manifest:
            entry = manifest[recipe.name]
            assert (entry.file, entry.family) == (recipe.file, recipe.family)
            assert entry.licence == manifest[recipe.fp32].licence
            assert "models/quantize.py" in entry.source
        if recipe.fp32 == "ssdlite-pedestrian":
            assert recipe.fp32_sha256 == manifest[recipe.fp32].sha256


# ------------------------------------------------------------------------------ the real models


def _sample_frames(video: Path, indices: list[int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    found = []
    for index in indices:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok
        found.append(frame)
    capture.release()
    return found


def _finds_the_same_people(int8: Detector, fp32: Detector, video: Path) -> None:
    """On frames of the clip the INT8 model finds the people FP32 finds confidently, at the same place."""
    for frame in _sample_frames(video, [100, 300, 500]):
        expected = fp32.detect(frame)
        found = int8.detect(frame)
        confident = expected.xyxy[expected.scores >= fp32.spec.new_track_threshold]
        assert len(confident) >= 2
        kept = found.xyxy[found.scores >= int8.spec.track_threshold]
        matched = [any(_iou(box, other) >= 0.5 for other in kept) for box in confident]
        assert np.mean(matched) >= 0.8, f"{int8.spec.name}: {sum(matched)} of {len(confident)} people found"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


@pytest.mark.integration
@pytest.mark.slow
def test_yolox_int8_made_by_the_script_matches_its_manifest_entry_and_finds_people(
    quantize: ModuleType, yolox_path: Path, vtest_path: Path, tmp_path: Path
) -> None:
    recipe = quantize.RECIPES["yolox-nano-int8"]
    entry = load_manifest()[recipe.name]
    if file_sha256(yolox_path) != recipe.fp32_sha256:
        pytest.skip(f"{yolox_path} is not the export the INT8 entry was made from")
    out = tmp_path / recipe.file
    quantize.quantize(recipe, yolox_path, out, quantize.read_frames(vtest_path))
    assert (file_sha256(out), out.stat().st_size) == (entry.sha256, entry.size)
    int8 = Detector(resolve_model(recipe.name, None, [tmp_path]))
    assert int8.spec.name == recipe.name and int8.spec.family == "yolox"
    _finds_the_same_people(int8, Detector(resolve_model(str(yolox_path))), vtest_path)
