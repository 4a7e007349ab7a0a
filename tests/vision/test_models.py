"""Model manifest, sha256 checks, and resolving names or files to a ModelSpec."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from agent.vision.models import (
    ModelError,
    ModelSpec,
    default_model_dirs,
    file_sha256,
    installed_models_dir,
    load_manifest,
    packaged_models_dir,
    read_signature,
    repo_models_dir,
    resolve_model,
)

YOLOX_RELEASE_SHA = "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d"


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def fake_yolox(path: Path, size: int = 64, rows: int | None = None) -> Path:
    """A tiny model with a YOLOX signature: float 1x3xHxW in, 1xNx85 out."""
    rows = rows if rows is not None else sum((size // s) ** 2 for s in (8, 16, 32))
    value = helper.make_tensor("v", TensorProto.FLOAT, [1, rows, 85], [0.0] * (rows * 85))
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["output"], value=value)],
        "yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, rows, 85])],
    )
    return _save(graph, path)


def fake_ssd(path: Path) -> Path:
    """A tiny model with a TF OD API SSD signature and no detections."""
    outputs = {
        "detection_boxes": [1, 1, 4],
        "detection_scores": [1, 1],
        "detection_classes": [1, 1],
        "num_detections": [1],
    }
    nodes = [
        helper.make_node(
            "Constant",
            [],
            [name],
            value=helper.make_tensor(name, TensorProto.FLOAT, dims, [0.0] * math.prod(dims)),
        )
        for name, dims in outputs.items()
    ]
    graph = helper.make_graph(
        nodes,
        "ssd",
        [helper.make_tensor_value_info("image_tensor", TensorProto.UINT8, ["b", "h", "w", 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims) for name, dims in outputs.items()],
    )
    return _save(graph, path)


def fake_other(path: Path) -> Path:
    """A model that is neither family: float [1, 4] in, the same out."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _save(graph, path)


def write_manifest(folder: Path, entries: dict[str, dict[str, object]], default: str | None = None) -> Path:
    lines = [f'default = "{default or next(iter(entries))}"', ""]
    for name, fields in entries.items():
        lines.append(f"[models.{name}]")
        for key, value in fields.items():
            text = f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value
            lines.append(f"{key} = {text}")
        lines.append("")
    path = folder / "manifest.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def entry_for(file_name: str, data: bytes, /, **overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "file": file_name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "family": "ssd",
        "input": "any",
        "labels": "person",
        "person_class": 1,
        "score_threshold": 0.4,
        "licence": "MIT",
        "source": "test",
    }
    fields.update(overrides)
    return fields


# ----------------------------------------------------------------------------- the real manifest


def test_repository_manifest_has_default_ssd_and_pinned_yolox_release() -> None:
    manifest = load_manifest()
    assert manifest.default == "ssdlite-pedestrian"
    assert manifest["ssdlite-pedestrian"].family == "ssd"
    yolox = manifest["yolox-nano"]
    assert (yolox.family, yolox.input_size, yolox.person_class) == ("yolox", (416, 416), 0)
    assert yolox.sha256 == YOLOX_RELEASE_SHA
    assert yolox.size == 3659407
    assert yolox.url == "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx"


def test_committed_ssd_file_matches_its_manifest_entry() -> None:
    spec = resolve_model("ssdlite-pedestrian", None, [repo_models_dir()])
    entry = load_manifest()["ssdlite-pedestrian"]
    assert spec.path.stat().st_size == entry.size
    assert spec.sha256 == entry.sha256 == file_sha256(spec.path)
    assert (spec.family, spec.person_class, spec.input_size) == ("ssd", 1, None)


def test_every_committed_onnx_file_is_listed_with_its_hash() -> None:
    manifest = load_manifest()
    listed = {entry.file: entry.sha256 for entry in manifest.values()}
    for path in repo_models_dir().glob("*.onnx"):
        assert listed.get(path.name) == file_sha256(path), path.name


# ---------------------------------------------------------------------------- manifest lookups


def test_manifest_sha_mismatch_is_refused_naming_model_and_both_hashes(tmp_path: Path) -> None:
    good = b"the bytes the manifest was written for"
    manifest = load_manifest(write_manifest(tmp_path, {"shelf-cam": entry_for("m.onnx", good)}))
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.onnx").write_bytes(b"something else entirely")

    with pytest.raises(ModelError) as caught:
        resolve_model("shelf-cam", None, [models], manifest=manifest)

    message = str(caught.value)
    assert "shelf-cam" in message
    assert hashlib.sha256(good).hexdigest() in message
    assert hashlib.sha256(b"something else entirely").hexdigest() in message


def test_state_dir_copy_is_found_before_the_repository_copy(tmp_path: Path) -> None:
    data = b"model bytes"
    manifest = load_manifest(write_manifest(tmp_path, {"m": entry_for("m.onnx", data)}))
    state, repo = tmp_path / "state", tmp_path / "repo"
    for folder in (state / "models", repo):
        folder.mkdir(parents=True)
        (folder / "m.onnx").write_bytes(data)

    spec = resolve_model("m", None, [state / "models", repo], manifest=manifest)

    assert spec.path == state / "models" / "m.onnx"
    assert spec.score_threshold == 0.4


def test_default_model_dirs_put_the_state_folder_first(tmp_path: Path) -> None:
    assert default_model_dirs(tmp_path) == [tmp_path / "models", packaged_models_dir()]
    assert default_model_dirs(None) == [packaged_models_dir()]


def test_a_source_checkout_uses_the_repository_models_folder() -> None:
    """No package data beside the agent package here: the checkout's models/ holds the shipped models."""
    assert not (installed_models_dir() / "manifest.toml").exists()
    assert packaged_models_dir() == repo_models_dir()
    assert load_manifest().path == repo_models_dir() / "manifest.toml"


def test_installed_package_data_is_preferred_to_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = tmp_path / "site-packages" / "agent" / "_models"
    installed.mkdir(parents=True)
    (installed / "manifest.toml").write_bytes((repo_models_dir() / "manifest.toml").read_bytes())
    monkeypatch.setattr("agent.vision.models.installed_models_dir", lambda: installed)
    assert packaged_models_dir() == installed
    assert default_model_dirs(tmp_path / "state") == [tmp_path / "state" / "models", installed]
    assert load_manifest().path == installed / "manifest.toml"


def test_missing_downloadable_model_says_how_to_fetch_it(tmp_path: Path) -> None:
    manifest = load_manifest(
        write_manifest(tmp_path, {"yolox-nano": entry_for("y.onnx", b"x", family="yolox", url="http://x/y")})
    )
    with pytest.raises(ModelError, match="retail-agent models fetch yolox-nano"):
        resolve_model("yolox-nano", None, [tmp_path / "nowhere"], manifest=manifest)


def test_missing_model_made_by_a_script_names_its_source(tmp_path: Path) -> None:
    source = "models/quantize.py yolox-nano-int8"
    manifest = load_manifest(write_manifest(tmp_path, {"m-int8": entry_for("m.onnx", b"x", source=source)}))
    with pytest.raises(ModelError, match=f"m.onnx not found in .*; source: {source}"):
        resolve_model("m-int8", None, [tmp_path / "nowhere"], manifest=manifest)


def test_unknown_name_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path, {"m": entry_for("m.onnx", b"x")}))
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*\bm\b"):
        resolve_model("nope", None, [tmp_path], manifest=manifest)


def test_explicit_family_that_contradicts_the_manifest_is_refused(tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path, {"m": entry_for("m.onnx", b"x")}))
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="family ssd, not yolox"):
        resolve_model("m", "yolox", [tmp_path], manifest=manifest)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"sha256": "abc"}, "models.m.sha256"),
        ({"family": "rcnn"}, "models.m.family"),
        ({"score_threshold": 1.5}, "models.m.score_threshold"),
        ({"input": [416]}, "models.m.input"),
        ({"file": "../m.onnx"}, "models.m.file"),
    ],
)
def test_bad_manifest_values_are_reported_by_key(tmp_path: Path, override: dict[str, object], key: str) -> None:
    path = write_manifest(tmp_path, {"m": entry_for("m.onnx", b"x", **override)})
    with pytest.raises(ModelError, match=key):
        load_manifest(path)


def test_manifest_default_must_name_a_model(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, {"m": entry_for("m.onnx", b"x")}, default="other")
    with pytest.raises(ModelError, match="default"):
        load_manifest(path)


# -------------------------------------------------------------------------- files and families


def test_onnx_file_with_a_manifest_hash_gets_that_entry(tmp_path: Path) -> None:
    path = fake_ssd(tmp_path / "renamed.onnx")
    manifest = load_manifest(write_manifest(tmp_path, {"known": entry_for("x.onnx", path.read_bytes())}))
    spec = resolve_model(str(path), manifest=manifest)
    assert (spec.name, spec.path, spec.score_threshold) == ("known", path, 0.4)


def test_family_is_recognised_from_a_yolox_signature(tmp_path: Path) -> None:
    path = fake_yolox(tmp_path / "y.onnx", size=64)
    manifest = load_manifest(write_manifest(tmp_path, {"m": entry_for("m.onnx", b"x")}))
    spec = resolve_model(str(path), manifest=manifest)
    assert (spec.family, spec.input_size, spec.person_class) == ("yolox", (64, 64), 0)
    assert spec.name == "y"


def test_output_rows_that_do_not_fit_the_yolox_strides_are_not_yolox(tmp_path: Path) -> None:
    assert read_signature(fake_yolox(tmp_path / "y.onnx", size=64, rows=85)).family is None


def test_family_is_recognised_from_an_ssd_signature(tmp_path: Path) -> None:
    signature = read_signature(fake_ssd(tmp_path / "s.onnx"))
    assert (signature.family, signature.input_size) == ("ssd", None)


def test_unrecognisable_model_asks_for_family_and_accepts_it_when_given(tmp_path: Path) -> None:
    path = fake_other(tmp_path / "other.onnx")
    manifest = load_manifest(write_manifest(tmp_path, {"m": entry_for("m.onnx", b"x")}))
    with pytest.raises(ModelError, match="--family"):
        resolve_model(str(path), manifest=manifest)
    assert resolve_model(str(path), "ssd", manifest=manifest).family == "ssd"


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("not a model")
    manifest = load_manifest(write_manifest(tmp_path, {"m": entry_for("m.onnx", b"x")}))
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        resolve_model(str(path), manifest=manifest)


@pytest.mark.integration
def test_family_is_recognised_for_the_yolox_nano_file(yolox_path: Path) -> None:
    signature = read_signature(yolox_path)
    assert (signature.family, signature.input_size) == ("yolox", (416, 416))
    spec = resolve_model(str(yolox_path))
    assert spec.family == "yolox"


@pytest.mark.integration
def test_family_is_recognised_for_the_committed_ssd_file() -> None:
    path = repo_models_dir() / load_manifest()["ssdlite-pedestrian"].file
    assert read_signature(path).family == "ssd"


def test_sha256_is_recomputed_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    first = file_sha256(path)
    path.write_bytes(b"three")
    os.utime(path, ns=(1, 1))
    assert first == hashlib.sha256(b"one").hexdigest()
    assert file_sha256(path) == hashlib.sha256(b"three").hexdigest()


def test_model_spec_refuses_an_unknown_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="family"):
        ModelSpec("m", tmp_path, "0" * 64, "rcnn", None, 0, 0.5, "MIT", "test")  # type: ignore[arg-type]
