"""The runtime side of a model delivered by fleet: load it, swap the detector, check it, keep or roll back.

``RuntimeModels`` is the ``ModelHost`` the fleet model job drives (see ``agent.fleet.model_update``).
The detector is replaced in the running counting component between two frames, so counting never
stops; rolling back is the same swap with the previous detector. ``active_detector`` gives the
delivered model recorded in ``STATE_DIR/models/active.json`` at start, verified by its sha256.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from agent.config import AgentConfig
from agent.fleet.active_model import ActiveModel, model_path, models_dir, read_active, write_active
from agent.runtime.counting import TrafficService
from agent.vision.detector import Detector
from agent.vision.models import ModelError, ModelSpec, load_manifest, resolve_model

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


def delivered_spec(path: Path, name: str, family: str | None, licence: str | None) -> ModelSpec:
    """The spec of a delivered model file: from the manifest when it lists the sha256, else as given."""
    try:
        manifest = load_manifest()
    except ModelError:
        manifest = None
    spec = resolve_model(str(path), family, [path.parent], manifest=manifest)
    if manifest is not None and manifest.by_sha256(spec.sha256) is not None:
        return spec
    return dataclasses.replace(spec, name=name, licence=licence or spec.licence, source="fleet")


def make_detector(config: AgentConfig, spec: ModelSpec) -> Detector:
    """A detector for ``spec`` with the configured threads, threshold and tiles."""
    det = config.detector
    tiles = det.tiles if spec.family == "ssd" else 1
    return Detector(spec, threads=det.threads, score_threshold=det.score_threshold, tiles=tiles)


def active_detector(config: AgentConfig) -> Detector | None:
    """The delivered model recorded as active, loaded; None (logged) when there is none or it is unusable."""
    record = read_active(config.device.state_dir)
    if record is None:
        return None
    path = model_path(config.device.state_dir, record.sha256)
    try:
        spec = delivered_spec(path, record.name, record.family, record.licence)
        if spec.sha256 != record.sha256:
            raise ModelError(f"{path} has sha256 {spec.sha256}, active.json says {record.sha256}")
        detector = make_detector(config, spec)
    except (ModelError, ValueError, OSError) as exc:
        logger.error("the delivered model in %s cannot be used (%s); the configured model is used", path, exc)
        return None
    logger.info("using the delivered model %s (%s)", spec.name, spec.sha256[:12])
    return detector


def detections_sane(detector: Detector, frame: Image) -> str | None:
    """None when ``detector`` finds at least one person on ``frame`` with outputs in range, else why not."""
    try:
        found = detector.detect(frame)
    except Exception:  # onnxruntime raises its own exception types
        logger.exception("reference inference failed")
        return "inference_failed"
    xyxy, scores = np.asarray(found.xyxy), np.asarray(found.scores)
    if len(scores) == 0:
        return "no_detection"
    height, width = frame.shape[:2]
    if not (np.isfinite(xyxy).all() and np.isfinite(scores).all()):
        return "outputs_out_of_range"
    if (scores <= 0).any() or (scores > 1).any():
        return "outputs_out_of_range"
    if (xyxy < 0).any() or (xyxy[:, [0, 2]] > width).any() or (xyxy[:, [1, 3]] > height).any():
        return "outputs_out_of_range"
    if (xyxy[:, 2] <= xyxy[:, 0]).any() or (xyxy[:, 3] <= xyxy[:, 1]).any():
        return "outputs_out_of_range"
    return None


class _Runtime(Protocol):
    config: AgentConfig
    counting: TrafficService

    def announce_model(self, spec: ModelSpec) -> None: ...


class RuntimeModels:
    """Model swaps in the running agent, driven by the fleet model job in the sync thread."""

    def __init__(self, runtime: _Runtime, current: Detector) -> None:
        self.runtime = runtime
        self.current = current
        self._previous: Detector | None = None
        self._candidate: Detector | None = None
        self.lock = threading.RLock()
        """Held while the detector changes hands (a swap, a rollback, a kept candidate, a config reload)."""

    @property
    def checking(self) -> bool:
        """A candidate replaced the detector and its health check has not ended yet."""
        return self._previous is not None

    def is_listed(self, sha256: str) -> bool:
        try:
            return load_manifest().by_sha256(sha256) is not None
        except ModelError:
            return False

    def current_sha256(self) -> str:
        return self.current.spec.sha256

    def load_candidate(self, path: Path, name: str, family: str | None, licence: str | None) -> None:
        try:
            spec = delivered_spec(path, name, family, licence)
            self._candidate = make_detector(self.runtime.config, spec)
        except (ModelError, ValueError, OSError) as exc:
            raise ValueError(str(exc)) from None

    def swap_to_candidate(self) -> None:
        with self.lock:
            if self._candidate is None:
                raise RuntimeError("no candidate model is loaded")
            self._previous, self.current = self.current, self._candidate
            self.runtime.counting.replace_detector(self.current)

    def check_reference(self) -> str | None:
        frame = self.reference_frame()
        if frame is None:
            return "no_reference_frame"
        return detections_sane(self.current, frame)

    def reference_frame(self) -> Image | None:
        """The configured reference image, else the last frame the running model saw a person in."""
        fleet = self.runtime.config.fleet
        if fleet is not None and fleet.reference_frame is not None:
            image: Any = cv2.imread(str(fleet.reference_frame), cv2.IMREAD_COLOR)
            if image is None:
                logger.error("fleet.reference_frame %s is not an image", fleet.reference_frame)
                return None
            return np.asarray(image, dtype=np.uint8)
        return self.runtime.counting.reference_image

    def frames_counted(self) -> int:
        return self.runtime.counting.stats.frames

    def inference_ratio(self) -> float | None:
        previous = self._previous.mean_inference_s if self._previous is not None else None
        candidate = self.current.mean_inference_s if self._previous is not None else None
        if previous is None or candidate is None or previous <= 0:
            return None
        return candidate / previous

    def frame_rate(self) -> float:
        return self.runtime.counting.rate.per_second()

    def roll_back(self) -> None:
        with self.lock:
            if self._previous is None:
                return
            dropped = self.current
            self.current, self._previous, self._candidate = self._previous, None, None
            self.runtime.counting.replace_detector(self.current)
            logger.warning("model %s rolled back to %s", dropped.spec.name, self.current.spec.name)
            state_dir = self.runtime.config.device.state_dir
            if dropped.spec.path == model_path(state_dir, dropped.spec.sha256):
                dropped.spec.path.unlink(missing_ok=True)

    def keep_candidate(self, job_id: str) -> None:
        with self.lock:
            spec = self.current.spec
            previous = self._previous.spec.sha256 if self._previous is not None else None
            record = ActiveModel(
                sha256=spec.sha256,
                name=spec.name,
                family=spec.family,
                licence=spec.licence,
                job_id=job_id,
                activated_at=time.time(),
                previous=previous,
            )
            state_dir = self.runtime.config.device.state_dir
            write_active(state_dir, record)
            self._previous, self._candidate = None, None
            self.runtime.announce_model(spec)
            prune_delivered(state_dir, keep={spec.sha256, previous or ""})


def prune_delivered(state_dir: Path, keep: set[str]) -> list[Path]:
    """Delete delivered models other than those in ``keep`` (the one in use and the one before); the paths removed."""
    removed = []
    for path in sorted(models_dir(state_dir).glob("*.onnx")):
        if len(path.stem) == 64 and path.stem not in keep:
            path.unlink(missing_ok=True)
            removed.append(path)
            logger.info("delivered model %s removed (neither in use nor the one before)", path.name)
    return removed
