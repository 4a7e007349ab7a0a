"""The ONNX person detector: decoders, letterbox, NMS, tiling and frame checks."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from agent.vision.detector import (
    Detector,
    Letterbox,
    decode_ssd,
    decode_yolox,
    letterbox,
    nms,
    tile_grid,
    yolox_grid,
)
from agent.vision.models import ModelSpec, resolve_model


def ssd_spec(path: Path, threshold: float = 0.5) -> ModelSpec:
    return ModelSpec("fake-ssd", path, "0" * 64, "ssd", None, 1, threshold, "test", "test")


def fake_ssd(
    path: Path, boxes: list[list[float]], scores: list[float], classes: list[float], count: int | None = None
) -> Path:
    """An SSD-signature model that returns the same normalised boxes for any image."""
    n = len(boxes)
    values = {
        "detection_boxes": ([1, n, 4], [v for box in boxes for v in box]),
        "detection_scores": ([1, n], scores),
        "detection_classes": ([1, n], classes),
        "num_detections": ([1], [float(n if count is None else count)]),
    }
    nodes = [
        helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, dims, data))
        for name, (dims, data) in values.items()
    ]
    graph = helper.make_graph(
        nodes,
        "ssd",
        [helper.make_tensor_value_info("image_tensor", TensorProto.UINT8, ["b", "h", "w", 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims) for name, (dims, _) in values.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def centre_box_model(tmp_path: Path) -> Path:
    """Always one person in the middle half of the image, score 0.9."""
    return fake_ssd(tmp_path / "centre.onnx", [[0.25, 0.25, 0.75, 0.75]], [0.9], [1.0])


# ------------------------------------------------------------------------------------ YOLOX


def test_yolox_decoder_maps_one_known_anchor_to_its_box_in_the_source_frame() -> None:
    size = (416, 416)
    raw = np.zeros((1, 3549, 85), np.float32)
    # Stride-16 cell (x=5, y=7): rows 0..2703 are stride 8 (52x52), then 26x26 cells row-major.
    index = 52 * 52 + 7 * 26 + 5
    raw[0, index, :6] = [0.5, 0.25, math.log(2.0), math.log(4.0), 0.9, 0.8]
    raw[0, index + 1, :6] = [0, 0, 0, 0, 0.9, 0.1]  # a weak person: dropped
    raw[0, index + 2, 4:7] = [0.9, 0.0, 0.95]  # a confident class 1 (not person): dropped

    xyxy, scores = decode_yolox(raw, size, person_class=0, score_threshold=0.3)

    centre_x, centre_y = (5 + 0.5) * 16, (7 + 0.25) * 16
    np.testing.assert_allclose(xyxy, [[centre_x - 16, centre_y - 32, centre_x + 16, centre_y + 32]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.72], atol=1e-6)
    # A 768x576 frame is scaled by 416/768 into the input, so the box grows back by 768/416.
    _, box = letterbox(np.zeros((576, 768, 3), np.uint8), size)
    source = box.to_source(xyxy)
    np.testing.assert_allclose(source, xyxy * (768 / 416), rtol=1e-5)


def test_yolox_grid_lists_cells_stride_by_stride() -> None:
    grid, stride = yolox_grid((416, 416))
    assert grid.shape == (3549, 2)
    assert stride[0, 0] == 8 and stride[-1, 0] == 32
    np.testing.assert_array_equal(grid[53], [1, 1])  # second row, second column at stride 8
    np.testing.assert_array_equal(grid[-1], [12, 12])


def test_yolox_decoder_refuses_an_output_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="rows"):
        decode_yolox(np.zeros((1, 100, 85), np.float32), (416, 416), 0, 0.3)


# -------------------------------------------------------------------------------- letterbox


def test_letterbox_keeps_aspect_pads_with_114_and_round_trips_boxes() -> None:
    frame = np.full((576, 768, 3), 200, np.uint8)
    image, box = letterbox(frame, (416, 416))

    assert image.shape == (416, 416, 3)
    assert box.scale == pytest.approx(416 / 768)
    assert (image[:312] == 200).all()  # 576 * 416 / 768 = 312 rows of picture
    assert (image[312:] == 114).all()
    boxes = np.array([[10, 20, 300, 500], [0, 0, 768, 576]], np.float32)
    np.testing.assert_allclose(box.to_source(box.to_input(boxes)), boxes, atol=1e-3)
    np.testing.assert_allclose(box.to_input(boxes)[1], [0, 0, 416, 312], atol=1e-3)


def test_letterbox_padding_offset_is_undone() -> None:
    box = Letterbox(scale=0.5, pad_x=10, pad_y=20)
    np.testing.assert_allclose(box.to_source(np.array([[10, 20, 60, 70]], np.float32)), [[0, 0, 100, 100]])


# -------------------------------------------------------------------------------------- NMS


def test_nms_keeps_the_best_of_overlapping_boxes_and_all_separate_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert sorted(nms(boxes, scores, 0.99).tolist()) == [0, 1, 2, 3]


def test_nms_of_nothing_is_nothing() -> None:
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).size == 0


# -------------------------------------------------------------------------------------- SSD


def test_ssd_decoder_converts_normalised_yxyx_and_keeps_only_confident_people() -> None:
    boxes = np.array([[0.1, 0.2, 0.5, 0.4], [0, 0, 1, 1], [0.2, 0.2, 0.3, 0.3]], np.float32)
    scores = np.array([0.9, 0.95, 0.2], np.float32)
    classes = np.array([1, 3, 1], np.float32)

    xyxy, kept = decode_ssd(boxes, scores, classes, (100, 200), person_class=1, score_threshold=0.5)

    np.testing.assert_allclose(xyxy, [[40, 10, 80, 50]])
    np.testing.assert_allclose(kept, [0.9])


def test_ssd_detector_honours_num_detections(tmp_path: Path) -> None:
    path = fake_ssd(tmp_path / "m.onnx", [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], [0.9, 0.9], [1, 1], count=1)
    found = Detector(ssd_spec(path)).detect(np.zeros((100, 100, 3), np.uint8))
    np.testing.assert_allclose(found.xyxy, [[0, 0, 50, 50]])


def test_tile_grid_covers_the_frame_with_overlapping_windows() -> None:
    windows = tile_grid(576, 768, 2)
    assert len(windows) == 4
    assert {w[0] for w in windows} == {0, 341} and {w[2] for w in windows} == {427, 768}
    assert {w[1] for w in windows} == {0, 256} and {w[3] for w in windows} == {320, 576}
    assert tile_grid(576, 768, 1) == [(0, 0, 768, 576)]


def test_tiling_returns_boxes_in_full_frame_coordinates(centre_box_model: Path) -> None:
    frame = np.zeros((576, 768, 3), np.uint8)
    found = Detector(ssd_spec(centre_box_model), tiles=2).detect(frame)

    expected = []
    for x1, y1, x2, y2 in tile_grid(576, 768, 2):
        w, h = x2 - x1, y2 - y1
        expected.append([x1 + w / 4, y1 + h / 4, x1 + 3 * w / 4, y1 + 3 * h / 4])
    order = np.lexsort((found.xyxy[:, 0], found.xyxy[:, 1]))
    np.testing.assert_allclose(found.xyxy[order], sorted(expected, key=lambda b: (b[1], b[0])), atol=1e-3)
    assert len(found) == 4


def test_tiling_is_refused_for_yolox(tmp_path: Path) -> None:
    spec = ModelSpec("y", tmp_path / "y.onnx", "0" * 64, "yolox", (416, 416), 0, 0.3, "test", "test")
    with pytest.raises(ValueError, match="tiling"):
        Detector(spec, tiles=2)


# ------------------------------------------------------------------------------ frame checks


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (None, "numpy array"),
        (np.zeros((10, 10), np.uint8), "shape"),
        (np.zeros((10, 10, 4), np.uint8), "shape"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
    ],
)
def test_wrong_frames_raise_a_clear_value_error(centre_box_model: Path, frame: object, words: str) -> None:
    detector = Detector(ssd_spec(centre_box_model))
    with pytest.raises(ValueError, match=words):
        detector.detect(frame)  # type: ignore[arg-type]


def test_boxes_are_clipped_to_the_frame(tmp_path: Path) -> None:
    path = fake_ssd(tmp_path / "m.onnx", [[-0.1, 0.5, 1.2, 1.3]], [0.9], [1.0])
    found = Detector(ssd_spec(path)).detect(np.zeros((100, 200, 3), np.uint8))
    np.testing.assert_allclose(found.xyxy, [[100, 0, 200, 100]])


# ---------------------------------------------------------------------------- real models


def _frames(video: Path, indices: list[int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    try:
        for index in indices:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            assert ok, f"cannot read frame {index} of {video}"
            frames.append(frame)
    finally:
        capture.release()
    return frames


@pytest.fixture(scope="module")
def ssd_detector() -> Detector:
    return Detector(resolve_model("ssdlite-pedestrian"))


@pytest.fixture(scope="module")
def yolox_detector(yolox_path: Path) -> Detector:
    return Detector(resolve_model(str(yolox_path)))


@pytest.fixture(params=["ssd", "yolox"])
def real_detector(request: pytest.FixtureRequest) -> Detector:
    """Each real model in turn; only the YOLOX case needs the YOLOX-Nano export."""
    detector: Detector = request.getfixturevalue(f"{request.param}_detector")
    return detector


@pytest.mark.integration
def test_detect_finds_plausible_people_on_sample_frames(real_detector: Detector, vtest_path: Path) -> None:
    detector = real_detector
    family = detector.spec.family
    for frame in _frames(vtest_path, [100, 300, 500]):
        found = detector.detect(frame)
        assert (found.scores >= detector.score_threshold).all()
        # Boxes confident enough to start a track (lower ones may only continue one).
        xyxy = found.xyxy[found.scores >= detector.spec.track_threshold]
        assert len(xyxy) >= 2, f"{family}: only {len(xyxy)} people"
        assert (xyxy[:, [0, 2]] >= 0).all() and (xyxy[:, [0, 2]] <= 768).all()
        assert (xyxy[:, [1, 3]] >= 0).all() and (xyxy[:, [1, 3]] <= 576).all()
        heights, widths = xyxy[:, 3] - xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0]
        assert np.median(heights / widths) > 1.3, "people seen obliquely are taller than wide"
        assert ((heights > 20) & (heights < 300)).all()


@pytest.mark.integration
def test_black_frame_gives_nothing_that_could_start_a_track(real_detector: Detector) -> None:
    detector = real_detector
    found = detector.detect(np.zeros((576, 768, 3), np.uint8))
    assert not (found.scores >= detector.spec.track_threshold).any()


@pytest.mark.integration
def test_ssd_tiles_find_people_in_full_frame_coordinates(vtest_path: Path) -> None:
    (frame,) = _frames(vtest_path, [300])
    plain = Detector(resolve_model("ssdlite-pedestrian")).detect(frame)
    tiled = Detector(resolve_model("ssdlite-pedestrian"), tiles=2).detect(frame)
    assert len(plain) >= 2 and len(tiled) >= 2
    # Most people found on the whole frame are found again, at the same place, by the tiles.
    best = [max(_iou(box, other) for other in tiled.xyxy) for box in plain.xyxy]
    assert np.mean(np.array(best) >= 0.5) >= 0.6


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))
