"""Counting a whole video file as fast as the CPU allows (``retail-agent count``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.vision.pipeline import FrameResult, TrafficPipeline, build_pipeline
from agent.vision.prefetch import prefetch
from agent.vision.source import SourceError, SourceSpec, parse_source, read_frames

logger = logging.getLogger(__name__)


@dataclass
class CountReport:
    """Totals of one run over a file, in the shape ``retail-agent count --json`` prints."""

    source: str
    frames: int
    seconds: float
    model_name: str
    model_sha256: str
    lines: dict[str, dict[str, int]]
    zone_frames: dict[str, list[int]]

    def describe(self) -> str:
        """The report in words, one line per line and zone."""
        lines = [f"{self.source}: {self.frames} frames in {self.seconds:.1f} s ({self.model_name})"]
        lines += [f"  line {name}: in {counts['in']}, out {counts['out']}" for name, counts in self.lines.items()]
        for name, zone in self.to_json()["zones"].items():
            lines.append(f"  zone {name}: mean {zone['mean']:.2f}, max {zone['max']}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        zones = {}
        for name, counts in self.zone_frames.items():
            zones[name] = {
                "mean": round(sum(counts) / len(counts), 4) if counts else 0.0,
                "max": max(counts, default=0),
                "per_frame": counts,
            }
        return {
            "source": self.source,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "model": {"name": self.model_name, "sha256": self.model_sha256},
            "lines": self.lines,
            "zones": zones,
        }


def count_video(
    spec: SourceSpec,
    pipeline: TrafficPipeline,
    on_result: Callable[[FrameResult], None] | None = None,
    max_frames: int | None = None,
) -> CountReport:
    """Process every decoded frame of a file (or the first ``max_frames``) and total the counts."""
    lines = {name: {"in": 0, "out": 0} for name in pipeline.line_names}
    zone_frames: dict[str, list[int]] = {name: [] for name in pipeline.zone_names}
    frames = 0
    started = time.perf_counter()

    def tally(result: FrameResult) -> None:
        for crossing in result.crossings:
            lines[crossing.line][crossing.direction] += 1
        if on_result is not None:
            on_result(result)

    for frame in prefetch(islice(read_frames(spec, file_start_t=0.0), max_frames)):
        result = pipeline.process(frame)
        frames += 1
        for zone in result.zones:
            zone_frames[zone.zone].append(zone.occupancy)
        tally(result)
    tally(pipeline.finish())
    spec_model = pipeline.detector.spec
    return CountReport(
        source=str(Path(str(spec.value))) if spec.kind == "file" else str(spec.value),
        frames=frames,
        seconds=time.perf_counter() - started,
        model_name=spec_model.name,
        model_sha256=spec_model.sha256,
        lines=lines,
        zone_frames=zone_frames,
    )


def file_source(path: Path) -> SourceSpec:
    """A video file to count, refused with SourceError when it is not there."""
    if not path.is_file():
        raise SourceError(f"cannot read video {path}: no such file")
    return parse_source(str(path))


def count_file(config: AgentConfig, video: Path, model: str | None = None) -> CountReport:
    """``retail-agent count``: the configured lines and zones counted over a whole file."""
    source = file_source(video)
    return count_video(source, build_pipeline(config, model))
