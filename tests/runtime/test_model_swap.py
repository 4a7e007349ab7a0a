"""The runtime side of delivered models with the real default model: sanity of the reference inference,
the active record at start, and pruning of old delivered files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config import AgentConfig, load_config
from agent.fleet.active_model import ActiveModel, model_path, write_active
from agent.runtime.model_swap import (
    RuntimeModels,
    active_detector,
    detections_sane,
    make_detector,
    prune_delivered,
)
from agent.vision.detector import Detector
from agent.vision.models import load_manifest, resolve_model


def config_at(tmp_path: Path) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(f'[device]\nid = "d1"\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    return load_config(path)


def default_model_file() -> Path:
    manifest = load_manifest()
    return resolve_model(manifest.default).path


@pytest.fixture
def person_frame(vtest_path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(vtest_path))
    for _ in range(60):
        ok, image = capture.read()
        assert ok
    capture.release()
    return np.asarray(image, dtype=np.uint8)


def test_the_reference_inference_wants_a_person_on_the_frame(tmp_path: Path, person_frame: np.ndarray) -> None:
    config = config_at(tmp_path)
    detector = make_detector(config, resolve_model(load_manifest().default))
    assert detections_sane(detector, person_frame) is None
    empty = np.full_like(person_frame, 128)
    assert detections_sane(detector, empty) == "no_detection"


def test_a_recorded_delivered_model_is_loaded_at_start_and_a_tampered_one_is_not(tmp_path: Path) -> None:
    config = config_at(tmp_path)
    source = default_model_file()
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    target = model_path(config.device.state_dir, sha)
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    write_active(config.device.state_dir, ActiveModel(sha, "delivered", "ssd", "MIT", "job-1", 1.0, None))
    detector = active_detector(config)
    assert detector is not None and detector.spec.sha256 == sha and detector.spec.path == target

    with target.open("r+b") as handle:  # a file changed behind the agent's back
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    assert active_detector(config) is None


def test_pruning_keeps_the_model_in_use_and_the_one_before(tmp_path: Path) -> None:
    shas = [f"{i:064x}" for i in range(4)]
    for sha in shas:
        path = model_path(tmp_path, sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"m")
    (tmp_path / "models" / "yolox_nano.onnx").write_bytes(b"fetched by hand")
    removed = prune_delivered(tmp_path, keep={shas[2], shas[3]})
    assert sorted(p.stem for p in removed) == shas[:2]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(
        [f"{shas[2]}.onnx", f"{shas[3]}.onnx", "yolox_nano.onnx"]
    )


class _Counting:
    def __init__(self) -> None:
        self.detectors: list[Detector] = []

    def replace_detector(self, detector: Detector) -> None:
        self.detectors.append(detector)


class _Runtime:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.counting = _Counting()

    def announce_model(self, spec: object) -> None:
        pass


def test_a_candidate_slower_per_inference_shows_in_the_inference_ratio(
    tmp_path: Path, person_frame: np.ndarray
) -> None:
    config = config_at(tmp_path)
    spec = resolve_model(load_manifest().default)
    previous = Detector(spec, threads=1, tiles=1)
    heavy = Detector(spec, threads=1, tiles=3)  # nine inferences a frame: the same model, much slower
    assert previous.mean_inference_s is None
    for _ in range(4):
        previous.detect(person_frame)
    assert previous.mean_inference_s is not None and previous.mean_inference_s > 0
    models = RuntimeModels(_Runtime(config), previous)  # type: ignore[arg-type]
    models._candidate = heavy
    models.swap_to_candidate()
    assert models.inference_ratio() is None  # the candidate has not run yet
    for _ in range(4):
        heavy.detect(person_frame)
    ratio = models.inference_ratio()
    assert ratio is not None and ratio > 3.0
    models.roll_back()
    assert models.inference_ratio() is None
