"""Person detector on ONNX Runtime (CPU), with one decoder per model family."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from agent.vision.detections import Detections
from agent.vision.models import YOLOX_STRIDES, ModelError, ModelSpec

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

YOLOX_DEFAULT_SIZE = (416, 416)
LETTERBOX_VALUE = 114
TILE_OVERLAP = 0.2


# --------------------------------------------------------------------------------- frame checks


def check_frame(frame: Any) -> npt.NDArray[np.uint8]:
    """The frame if it is a non-empty HxWx3 uint8 BGR image; a ValueError saying what is wrong if not."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array (HxWx3 uint8 BGR), got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must have shape (height, width, 3), got {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame is empty: shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    return frame


# ---------------------------------------------------------------------------------- letterbox


@dataclass(frozen=True)
class Letterbox:
    """How a frame was scaled and padded into the model input: input = source * scale + pad."""

    scale: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_source(self, xyxy: FloatArray) -> FloatArray:
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        return ((xyxy - offset) / np.float32(self.scale)).astype(np.float32)

    def to_input(self, xyxy: FloatArray) -> FloatArray:
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)
        return (xyxy * np.float32(self.scale) + offset).astype(np.float32)


def letterbox(
    frame: npt.NDArray[np.uint8], size: tuple[int, int], value: int = LETTERBOX_VALUE
) -> tuple[npt.NDArray[np.uint8], Letterbox]:
    """Scale the frame to fit size (height, width) keeping its aspect, top-left, padded with value."""
    height, width = size
    scale = min(height / frame.shape[0], width / frame.shape[1])
    new_w = max(1, round(frame.shape[1] * scale))
    new_h = max(1, round(frame.shape[0] * scale))
    canvas = np.full((height, width, 3), value, np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, Letterbox(scale=scale)


def yolox_input(frame: npt.NDArray[np.uint8], size: tuple[int, int]) -> tuple[FloatArray, Letterbox]:
    """The 1x3xHxW float32 BGR blob a YOLOX model takes (letterboxed, no normalisation).

    Also what models/quantize.py calibrates a YOLOX model on, so that calibration sees the detector's input.
    """
    image, box = letterbox(frame, size)
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32), box


def ssd_input(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The 1xHxWx3 uint8 RGB image an SSD model takes (it resizes inside)."""
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # ~20x faster than a reversed-axis copy
    return np.asarray(rgb, np.uint8)[None]


# ----------------------------------------------------------------------------------------- NMS


def box_iou(box: FloatArray, others: FloatArray) -> FloatArray:
    """IoU of one xyxy box with each of N others."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = np.maximum(area + areas - inter, np.float32(1e-9))
    iou: FloatArray = (inter / union).astype(np.float32)
    return iou


def nms(xyxy: FloatArray, scores: FloatArray, iou_threshold: float) -> IntArray:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(xyxy[best], xyxy[rest]) <= iou_threshold]
    return np.asarray(keep, np.intp)


# --------------------------------------------------------------------------------------- YOLOX


@functools.lru_cache(maxsize=8)
def yolox_grid(size: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
    """Cell offsets (N, 2) and strides (N, 1) of the YOLOX head for an input of size (height, width)."""
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        rows, cols = size[0] // stride, size[1] // stride
        ys, xs = np.mgrid[0:rows, 0:cols]
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((rows * cols, 1), stride))
    grid = np.concatenate(grids).astype(np.float32)
    stride_col = np.concatenate(strides).astype(np.float32)
    grid.setflags(write=False)
    stride_col.setflags(write=False)
    return grid, stride_col


def decode_yolox(
    raw: FloatArray, size: tuple[int, int], person_class: int, score_threshold: float
) -> tuple[FloatArray, FloatArray]:
    """Person boxes (xyxy in model-input pixels) and scores from a raw YOLOX output (1, N, 5 + classes).

    Each row is cx, cy, w, h in grid units, objectness, class scores (already sigmoid);
    xy = (xy + grid) * stride, wh = exp(wh) * stride, score = objectness * person score.
    """
    rows = raw.reshape(-1, raw.shape[-1])
    grid, stride = yolox_grid(size)
    if rows.shape[0] != grid.shape[0]:
        raise ValueError(f"YOLOX output has {rows.shape[0]} rows; a {size} input gives {grid.shape[0]}")
    scores = rows[:, 4] * rows[:, 5 + person_class]
    keep = scores >= score_threshold
    picked = rows[keep]
    centre = (picked[:, 0:2] + grid[keep]) * stride[keep]
    half = np.exp(picked[:, 2:4]) * stride[keep] / 2
    xyxy = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
    return xyxy, scores[keep].astype(np.float32)


# ----------------------------------------------------------------------------------------- SSD


def decode_ssd(
    boxes: FloatArray,
    scores: FloatArray,
    classes: FloatArray | None,
    frame_size: tuple[int, int],
    *,
    person_class: int,
    score_threshold: float,
) -> tuple[FloatArray, FloatArray]:
    """Person boxes (xyxy pixels of a frame of frame_size (height, width)) from TF OD API outputs.

    ``boxes`` are normalised ymin, xmin, ymax, xmax.
    """
    keep = scores >= score_threshold
    if classes is not None:
        keep &= np.rint(classes).astype(np.int64) == person_class
    height, width = frame_size
    ymin, xmin, ymax, xmax = boxes[keep].T
    xyxy = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
    return xyxy.astype(np.float32).reshape(-1, 4), scores[keep].astype(np.float32)


def tile_grid(height: int, width: int, tiles: int, overlap: float = TILE_OVERLAP) -> list[tuple[int, int, int, int]]:
    """A tiles x tiles grid of overlapping windows (x1, y1, x2, y2) covering the frame."""

    def spans(length: int) -> list[tuple[int, int]]:
        if tiles == 1:
            return [(0, length)]
        size = length / (tiles - (tiles - 1) * overlap)
        step = size * (1 - overlap)
        out = [(round(i * step), round(i * step + size)) for i in range(tiles)]
        out[-1] = (out[-1][0], length)
        return out

    return [(x1, y1, x2, y2) for y1, y2 in spans(height) for x1, x2 in spans(width)]


# ------------------------------------------------------------------------------------ detector


def _clip(xyxy: FloatArray, scores: FloatArray, height: int, width: int) -> Detections:
    if not len(xyxy):
        return Detections.empty()
    limits = np.array([width, height, width, height], np.float32)
    xyxy = np.clip(xyxy, 0, limits).astype(np.float32)
    real = ((xyxy[:, 2] - xyxy[:, 0]) >= 1) & ((xyxy[:, 3] - xyxy[:, 1]) >= 1)
    return Detections(np.ascontiguousarray(xyxy[real]), np.ascontiguousarray(scores[real]))


class Detector:
    """Runs one ONNX model on BGR frames and returns person boxes in frame pixels."""

    def __init__(
        self,
        spec: ModelSpec,
        threads: int = 1,
        score_threshold: float | None = None,
        tiles: int = 1,
        nms_iou: float = 0.5,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if tiles < 1:
            raise ValueError(f"tiles must be at least 1, got {tiles}")
        if tiles > 1 and spec.family != "ssd":
            raise ValueError(f"tiling is for the ssd family; model {spec.name} is {spec.family}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        threshold = spec.score_threshold if score_threshold is None else score_threshold
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {threshold}")
        self.spec = spec
        self.threads = threads
        self.score_threshold = threshold
        self.tiles = tiles
        self.nms_iou = nms_iou
        self._session = self._open(spec, threads)
        self._input = self._session.get_inputs()[0].name
        self._calls = 0
        self._timed_runs = 0
        self._timed_s = 0.0
        if spec.family == "yolox":
            self._size = spec.input_size or self._static_size() or YOLOX_DEFAULT_SIZE
            self._outputs = [self._session.get_outputs()[0].name]
        else:
            self._outputs = self._ssd_outputs()
        logger.info(
            "detector %s (%s), %d thread(s), score >= %.2f%s",
            spec.name,
            spec.family,
            threads,
            threshold,
            f", {tiles}x{tiles} tiles" if tiles > 1 else "",
        )

    @staticmethod
    def _open(spec: ModelSpec, threads: int) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # Measured (tests/benchmarks/bench_memory.py): memory patterns cost 4-24 MB of RSS with no gain
        # in speed on these models; the arena stays on (without it YOLOX-Nano takes 9 MB more).
        options.enable_mem_pattern = False
        # Idle worker threads sleep instead of spinning: capture, tracking and the rest share the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(spec.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"model {spec.name}: cannot load {spec.path}: {exc}") from exc

    def _static_size(self) -> tuple[int, int] | None:
        shape = self._session.get_inputs()[0].shape
        if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:]):
            return (int(shape[2]), int(shape[3]))
        return None

    def _ssd_outputs(self) -> list[str]:
        by_name = {o.name.split(":")[0]: o.name for o in self._session.get_outputs()}
        missing = {"detection_boxes", "detection_scores"} - by_name.keys()
        if missing:
            raise ModelError(f"model {self.spec.name}: ssd outputs {sorted(missing)} not found")
        wanted = ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
        return [by_name[name] for name in wanted if name in by_name]

    def detect(self, frame_bgr: npt.NDArray[np.uint8]) -> Detections:
        """Person boxes in pixels of this frame (HxWx3 uint8 BGR)."""
        frame = check_frame(frame_bgr)
        height, width = frame.shape[:2]
        started = time.perf_counter()
        if self.spec.family == "yolox":
            xyxy, scores = self._detect_yolox(frame)
        elif self.tiles == 1:
            xyxy, scores = self._detect_ssd(frame)
        else:
            xyxy, scores = self._detect_tiles(frame)
        elapsed = time.perf_counter() - started
        self._calls += 1
        if self._calls > 1:  # the first run warms the session up and says little of the model's speed
            self._timed_runs += 1
            self._timed_s += elapsed
        return _clip(xyxy, scores, height, width)

    @property
    def mean_inference_s(self) -> float | None:
        """Mean time of one ``detect`` (all but the first call), or None before the second call."""
        runs, total = self._timed_runs, self._timed_s
        return total / runs if runs else None

    def _detect_yolox(self, frame: npt.NDArray[np.uint8]) -> tuple[FloatArray, FloatArray]:
        blob, box = yolox_input(frame, self._size)
        (raw,) = self._session.run(self._outputs, {self._input: blob})
        xyxy, scores = decode_yolox(raw, self._size, self.spec.person_class, self.score_threshold)
        keep = nms(xyxy, scores, self.nms_iou)
        return box.to_source(xyxy[keep]), scores[keep]

    def _detect_ssd(self, frame: npt.NDArray[np.uint8]) -> tuple[FloatArray, FloatArray]:
        rgb = ssd_input(frame)
        result = dict(zip(self._outputs, self._session.run(self._outputs, {self._input: rgb}), strict=True))
        named = {key.split(":")[0]: value for key, value in result.items()}
        count = int(named["num_detections"][0]) if "num_detections" in named else None
        boxes = named["detection_boxes"][0][:count]
        scores = named["detection_scores"][0][:count]
        classes = named["detection_classes"][0][:count] if "detection_classes" in named else None
        return decode_ssd(
            boxes,
            scores,
            classes,
            frame.shape[:2],
            person_class=self.spec.person_class,
            score_threshold=self.score_threshold,
        )

    def _detect_tiles(self, frame: npt.NDArray[np.uint8]) -> tuple[FloatArray, FloatArray]:
        all_boxes, all_scores = [], []
        for x1, y1, x2, y2 in tile_grid(frame.shape[0], frame.shape[1], self.tiles):
            xyxy, scores = self._detect_ssd(frame[y1:y2, x1:x2])
            all_boxes.append(xyxy + np.array([x1, y1, x1, y1], np.float32))
            all_scores.append(scores)
        xyxy = np.concatenate(all_boxes).astype(np.float32)
        scores = np.concatenate(all_scores).astype(np.float32)
        keep = nms(xyxy, scores, self.nms_iou)
        return xyxy[keep], scores[keep]
