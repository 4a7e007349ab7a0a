"""Which delivered model the device runs: ``STATE_DIR/models/active.json``, replaced atomically.

It is written only once a delivered model passed its health check, so an agent restarted at any
point before that starts with the model it ran before. Delivered models are kept by sha256 as
``STATE_DIR/models/{sha256}.onnx``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ACTIVE_FILE = "active.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def models_dir(state_dir: Path) -> Path:
    return state_dir / "models"


def model_path(state_dir: Path, sha256: str) -> Path:
    """Where a delivered model with this sha256 is kept."""
    if not _SHA256.match(sha256):
        raise ValueError(f"sha256 {sha256[:70]!r} must be 64 lowercase hex characters")
    return models_dir(state_dir) / f"{sha256}.onnx"


@dataclass(frozen=True)
class ActiveModel:
    """The delivered model in use, what the job said of it, and the one it replaced."""

    sha256: str
    name: str
    family: str | None
    licence: str | None
    job_id: str
    activated_at: float
    previous: str | None


def read_active(state_dir: Path) -> ActiveModel | None:
    """The record, or None when there is none or it cannot be read (logged)."""
    path = models_dir(state_dir) / ACTIVE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        record = ActiveModel(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        logger.error("%s cannot be read (%s); the configured model is used", path, exc)
        return None
    if not isinstance(record.sha256, str) or not _SHA256.match(record.sha256):
        logger.error("%s names no valid sha256; the configured model is used", path)
        return None
    return record


def write_active(state_dir: Path, record: ActiveModel) -> None:
    """Replace the record atomically (write, fsync, rename)."""
    folder = models_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ACTIVE_FILE}.tmp"
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(asdict(record), handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / ACTIVE_FILE)
    logger.info("active model is now %s (%s)", record.name, record.sha256[:12])
