"""Detector models: the manifest, sha256 checks, and resolving a name or file to a ModelSpec."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import onnxruntime as ort

logger = logging.getLogger(__name__)

Family = Literal["ssd", "yolox"]
FAMILIES: tuple[Family, ...] = ("ssd", "yolox")

# Used for ONNX files outside the manifest.
DEFAULT_PERSON_CLASS: Mapping[Family, int] = {"ssd": 1, "yolox": 0}  # TF OD API label map / COCO-80
DEFAULT_SCORE_THRESHOLD: Mapping[Family, float] = {"ssd": 0.1, "yolox": 0.1}
# Scores are calibrated differently per model: (track_threshold, new_track_threshold) for the tracker,
# measured with `retail-agent eval` on the sample clip's truth file.
DEFAULT_TRACK_THRESHOLDS: Mapping[Family, tuple[float, float]] = {"ssd": (0.3, 0.4), "yolox": (0.5, 0.6)}
YOLOX_STRIDES = (8, 16, 32)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MANIFEST_NAME = "manifest.toml"


class ModelError(Exception):
    """A model that cannot be used: unknown, missing, wrong hash or unrecognisable."""


@dataclass(frozen=True)
class ManifestEntry:
    """One model as the manifest describes it."""

    name: str
    file: str
    sha256: str
    size: int
    family: Family
    input_size: tuple[int, int] | None  # (height, width); None: the model takes any size
    labels: str
    person_class: int
    score_threshold: float
    licence: str
    source: str
    url: str | None = None
    track_threshold: float = 0.5
    new_track_threshold: float = 0.6


@dataclass(frozen=True, eq=False)
class Manifest(Mapping[str, ManifestEntry]):
    """The models of a manifest file by name, and which one is the default."""

    entries: Mapping[str, ManifestEntry]
    default: str
    path: Path

    def __getitem__(self, name: str) -> ManifestEntry:
        return self.entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def by_sha256(self, sha256: str) -> ManifestEntry | None:
        return next((e for e in self.entries.values() if e.sha256 == sha256), None)


@dataclass(frozen=True)
class ModelSpec:
    """A model file ready to load, with what the detector needs to decode it."""

    name: str
    path: Path
    sha256: str
    family: Family
    input_size: tuple[int, int] | None  # (height, width)
    person_class: int
    score_threshold: float
    licence: str
    source: str
    track_threshold: float = 0.5
    new_track_threshold: float = 0.6

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if not 0.0 < self.score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {self.score_threshold}")


def repo_models_dir() -> Path:
    """The models/ folder of a source checkout (beside the agent package)."""
    return Path(__file__).resolve().parents[2] / "models"


def installed_models_dir() -> Path:
    """Where an installed agent keeps its shipped models: the ``agent._models`` package data."""
    return Path(__file__).resolve().parents[1] / "_models"


def packaged_models_dir() -> Path:
    """The read-only folder of models that ship with the agent (manifest, default model, licence).

    An installed wheel carries them as package data; a source checkout (also an editable install)
    has them in the repository's models/ folder. Nothing is ever written here: fetched and
    delivered models go to the state folder's models/.
    """
    installed = installed_models_dir()
    return installed if (installed / MANIFEST_NAME).is_file() else repo_models_dir()


def default_manifest_path() -> Path:
    return packaged_models_dir() / MANIFEST_NAME


def default_model_dirs(state_dir: Path | None) -> list[Path]:
    """Where model files are looked for: the writable state models folder first, then the shipped ones."""
    dirs = [state_dir / "models"] if state_dir is not None else []
    dirs.append(packaged_models_dir())
    return dirs


# ------------------------------------------------------------------------------------ manifest


def _field(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise ModelError(f"{where}.{key}: missing")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelError(f"{where}.{key}: must be a {kind.__name__}, got {value!r}")
    return value


def _unit(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ModelError(f"{where}: must be a number between 0 and 1, got {value!r}")
    return float(value)


def _input_size(value: Any, where: str) -> tuple[int, int] | None:
    if isinstance(value, str) and "any" in value:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return (value[0], value[1])
    raise ModelError(f'{where}.input: must be [height, width] or a text saying "any", got {value!r}')


def _entry(name: str, table: Any, source: Path) -> ManifestEntry:
    where = f"{source.name}: models.{name}"
    if not isinstance(table, dict):
        raise ModelError(f"{where}: must be a table")
    sha256 = _field(table, "sha256", str, where)
    if not _SHA256.match(sha256):
        raise ModelError(f"{where}.sha256: must be 64 lowercase hex characters")
    family = _field(table, "family", str, where)
    if family not in FAMILIES:
        raise ModelError(f"{where}.family: must be one of {', '.join(FAMILIES)}, got {family!r}")
    threshold = _field(table, "score_threshold", float, where)
    if not 0.0 < threshold < 1.0:
        raise ModelError(f"{where}.score_threshold: must be between 0 and 1, got {threshold}")
    size = _field(table, "size", int, where)
    if size <= 0:
        raise ModelError(f"{where}.size: must be positive, got {size}")
    file = _field(table, "file", str, where)
    if Path(file).name != file:
        raise ModelError(f"{where}.file: must be a plain file name, got {file!r}")
    url = table.get("url")
    if url is not None and not isinstance(url, str):
        raise ModelError(f"{where}.url: must be a string")
    track_default, new_default = DEFAULT_TRACK_THRESHOLDS[cast(Family, family)]
    track = _unit(table.get("track_threshold", track_default), f"{where}.track_threshold")
    new_track = _unit(table.get("new_track_threshold", new_default), f"{where}.new_track_threshold")
    return ManifestEntry(
        name=name,
        file=file,
        sha256=sha256,
        size=size,
        family=cast(Family, family),
        input_size=_input_size(table.get("input"), where),
        labels=_field(table, "labels", str, where),
        person_class=_field(table, "person_class", int, where),
        score_threshold=threshold,
        licence=_field(table, "licence", str, where),
        source=_field(table, "source", str, where),
        url=url,
        track_threshold=track,
        new_track_threshold=new_track,
    )


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate a manifest; errors name the file and the key."""
    path = path or default_manifest_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model manifest {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path.name}: not valid TOML: {exc}") from exc
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ModelError(f"{path.name}: models: must hold at least one [models.<name>] table")
    entries = {name: _entry(name, table, path) for name, table in models.items()}
    default = data.get("default")
    if default not in entries:
        raise ModelError(f"{path.name}: default: must name one of the models ({', '.join(entries)})")
    return Manifest(entries=entries, default=str(default), path=path)


# ------------------------------------------------------------------------------------- hashing

_hash_lock = threading.Lock()
_hash_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The file's sha256, computed once per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value


# ---------------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Signature:
    """What an ONNX file's inputs and outputs say about it."""

    family: Family | None
    input_size: tuple[int, int] | None  # (height, width) when static


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _yolox_anchors(height: int, width: int) -> int:
    return sum((height // s) * (width // s) for s in YOLOX_STRIDES)


def read_signature(path: Path) -> Signature:
    """Recognise the family from the model's inputs and outputs (ONNX Runtime session metadata)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"{path}: not a loadable ONNX model: {exc}") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        return Signature(None, None)
    shape = list(inputs[0].shape)
    out_names = {o.name.split(":")[0] for o in outputs}
    if (
        inputs[0].type == "tensor(uint8)"
        and len(shape) == 4
        and shape[3] == 3
        and {"detection_boxes", "detection_scores"} <= out_names
    ):
        return Signature("ssd", None)
    if inputs[0].type == "tensor(float)" and len(shape) == 4 and shape[1] == 3 and len(outputs) == 1:
        out_shape = list(outputs[0].shape)
        height, width = _static(shape[2]), _static(shape[3])
        if len(out_shape) == 3 and isinstance(out_shape[2], int) and out_shape[2] > 5:
            size = (height, width) if height and width else None
            rows = _static(out_shape[1])
            if size is None or rows is None or rows == _yolox_anchors(*size):
                return Signature("yolox", size)
    return Signature(None, None)


# ---------------------------------------------------------------------------------- resolution


def _from_entry(entry: ManifestEntry, path: Path, sha256: str) -> ModelSpec:
    return ModelSpec(
        name=entry.name,
        path=path,
        sha256=sha256,
        family=entry.family,
        input_size=entry.input_size,
        person_class=entry.person_class,
        score_threshold=entry.score_threshold,
        licence=entry.licence,
        source=entry.source,
        track_threshold=entry.track_threshold,
        new_track_threshold=entry.new_track_threshold,
    )


def _as_family(value: str) -> Family:
    if value not in FAMILIES:
        raise ModelError(f"family must be one of {', '.join(FAMILIES)}, got {value!r}")
    return value


def _check_family(name: str, wanted: str | None, actual: Family) -> None:
    if wanted is not None and wanted != actual:
        raise ModelError(f"model {name} is of family {actual}, not {wanted}")


def _resolve_entry(entry: ManifestEntry, family: str | None, search_dirs: Sequence[Path]) -> ModelSpec:
    _check_family(entry.name, family, entry.family)
    for folder in search_dirs:
        path = folder / entry.file
        if not path.is_file():
            continue
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise ModelError(
                f"model {entry.name}: {path} has sha256 {actual} but the manifest expects {entry.sha256}; "
                "refusing to load it"
            )
        logger.debug("model %s: %s (sha256 verified)", entry.name, path)
        return _from_entry(entry, path, actual)
    where = ", ".join(str(d) for d in search_dirs) or "no folders"
    hint = f"; fetch it with `retail-agent models fetch {entry.name}`" if entry.url else f"; source: {entry.source}"
    raise ModelError(f"model {entry.name}: {entry.file} not found in {where}{hint}")


def _resolve_file(path: Path, family: str | None, manifest: Manifest | None) -> ModelSpec:
    sha256 = file_sha256(path)
    known = manifest.by_sha256(sha256) if manifest is not None else None
    if known is not None:
        _check_family(known.name, family, known.family)
        return _from_entry(known, path, sha256)
    signature = read_signature(path)
    chosen = signature.family if family is None else _as_family(family)
    if chosen is None:
        raise ModelError(
            f"cannot tell the model family of {path} from its inputs and outputs; pass --family ssd or --family yolox"
        )
    if signature.family is not None and signature.family != chosen:
        logger.warning("%s looks like a %s model but family %s was given", path, signature.family, chosen)
    return ModelSpec(
        name=path.stem,
        path=path,
        sha256=sha256,
        family=chosen,
        input_size=signature.input_size if chosen == "yolox" else None,
        person_class=DEFAULT_PERSON_CLASS[chosen],
        score_threshold=DEFAULT_SCORE_THRESHOLD[chosen],
        licence="unknown",
        source=str(path),
        track_threshold=DEFAULT_TRACK_THRESHOLDS[chosen][0],
        new_track_threshold=DEFAULT_TRACK_THRESHOLDS[chosen][1],
    )


def resolve_model(
    name_or_path: str,
    family: str | None = None,
    search_dirs: Sequence[Path] | None = None,
    *,
    manifest: Manifest | None = None,
) -> ModelSpec:
    """A manifest name (looked up in search_dirs, sha256 checked) or an ONNX file path as a ModelSpec."""
    dirs = list(search_dirs) if search_dirs is not None else default_model_dirs(None)
    if manifest is None:
        try:
            manifest = load_manifest()
        except ModelError:
            if not Path(name_or_path).expanduser().is_file():
                raise
            logger.warning("no model manifest; treating %s as a plain ONNX file", name_or_path)
    if manifest is not None and name_or_path in manifest:
        return _resolve_entry(manifest[name_or_path], family, dirs)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return _resolve_file(path, family, manifest)
    names = ", ".join(manifest) if manifest is not None else "none"
    raise ModelError(f"unknown model {name_or_path!r}: not a manifest name ({names}) and not a file")
