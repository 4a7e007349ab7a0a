"""The installer's view: one frame from the configured camera with the configured geometry and
the people the real detector finds in it, written to a local PNG (mode 0600) and audited.

It exists to check a mounting: are the lines where people walk, do the arrows point the way
``in`` should count, does the detector see people at this distance. The image never leaves the
device; writing it is recorded in the audit log (who, how many people, which file name).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.config import AgentConfig
from agent.storage.audit import Actor, Role, record
from agent.storage.database import open_database, transaction
from agent.vision.overlay import Overlay, draw_overlay, overlay_geometry
from agent.vision.pipeline import build_detector
from agent.vision.source import FrameReader, SourceError, open_capture, parse_source

logger = logging.getLogger(__name__)

IMAGE_MODE = 0o600
AUDIT_ACTION = "camera_view"


@dataclass(frozen=True)
class ViewResult:
    path: Path
    overlay: Overlay

    def describe(self) -> str:
        o = self.overlay
        return (
            f"{self.path}: {o.width}x{o.height}, {len(o.people)} person(s) detected, "
            f"{len(o.lines)} line(s), {len(o.zones)} zone(s), {len(o.masks)} mask(s)"
        )


def grab_frame(source: str | int, skip: int = 0) -> npt.NDArray[np.uint8]:
    """One frame from ``source`` (after ``skip`` frames, for files); raises SourceError."""
    spec = parse_source(source)
    with FrameReader(spec, open_capture(spec)) as reader:
        for frame in reader:
            if frame.index >= skip:
                return frame.image
    raise SourceError(f"{spec.label}: no frame to show (the source ended after {reader.grabbed} frame(s))")


def write_image(path: Path, image: npt.NDArray[np.uint8]) -> None:
    """Write a PNG readable by its owner only."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode the view as PNG for {path}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, IMAGE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), IMAGE_MODE)
        handle.write(encoded.tobytes())


def _word(name: str) -> str:
    """A file name as an audit word (identifier characters only)."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", name)[:96]


def make_view(
    config: AgentConfig,
    out: Path,
    *,
    actor: Actor | None = None,
    model: str | None = None,
    skip: int = 0,
    database: Path | None = None,
) -> ViewResult:
    """Grab, detect, draw, write ``out`` and record it in the audit log of the agent's database."""
    image = grab_frame(config.camera.source, skip)
    detections = build_detector(config, model).detect(image)
    height, width = image.shape[:2]
    overlay = overlay_geometry(config.camera, width, height, detections)
    write_image(out, draw_overlay(image, overlay))
    db = open_database(database or config.database_path)
    try:
        with transaction(db):
            record(
                db,
                actor or Actor(Role.CLI),
                AUDIT_ACTION,
                subject=config.device.id,
                detail={"people": len(overlay.people), "lines": len(overlay.lines), "file": _word(out.name)},
            )
    finally:
        db.close()
    logger.info("view of %dx%d written to %s with %d person(s)", width, height, out, len(overlay.people))
    return ViewResult(out, overlay)
