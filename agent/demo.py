"""``retail-agent demo``: the main job on embedded defaults, on the sample clip, into a local database."""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agent.config import AgentConfig, parse_config
from agent.contract.display import display_count
from agent.runtime.run import run_agent
from agent.sample import find_sample
from agent.storage.buckets import ZoneSummary, line_totals, zone_summary
from agent.storage.database import open_database
from agent.vision.pipeline import FrameResult

logger = logging.getLogger(__name__)


def demo_config(state_dir: Path, video: Path) -> AgentConfig:
    """The embedded demo config (lines and zones drawn for the sample clip) on this machine's paths."""
    data = tomllib.loads(resources.files("agent").joinpath("demo.toml").read_text(encoding="utf-8"))
    data.setdefault("device", {})["state_dir"] = str(state_dir)
    data.setdefault("camera", {})["source"] = str(video)
    return parse_config(data, "embedded demo config")


@dataclass
class DemoProgress:
    """Turns per-frame results into a progress line every few seconds."""

    report: Callable[[str], None]
    every_s: float = 2.0
    frames: int = 0
    people: int = 0
    crossings: int = 0
    _last: float = 0.0

    def __call__(self, result: FrameResult) -> None:
        if result.index >= 0:
            self.frames += 1
            self.people = result.people
        self.crossings += len(result.crossings)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.report(f"frame {self.frames}: {self.people} people in view, {self.crossings} line crossings so far")


def summary_lines(totals: dict[str, tuple[int, int]], zones: dict[str, ZoneSummary], threshold: int) -> list[str]:
    """The demo's summary, one line per line and zone; counts below ``threshold`` show as ``<N``."""
    out = []
    for name, (entered, left) in totals.items():
        out.append(
            f"  line {name:<12} in {display_count(entered, threshold):>4}   out {display_count(left, threshold):>4}"
        )
    for name, zone in zones.items():
        dwell = f"{zone.dwell_mean_s:.1f} s" if zone.dwell_mean_s is not None else "-"
        text = (
            f"  zone {name:<12} mean {zone.occupancy_mean:.1f} people, peak {zone.occupancy_max}, "
            f"{display_count(zone.visits, threshold)} visits, mean dwell {dwell}"
        )
        if zone.queue_mean is not None and zone.queue_max is not None:
            text += f", queue mean {zone.queue_mean:.1f}, peak {zone.queue_max}"
        out.append(text)
    return out


def run_demo(
    state_dir: Path,
    video: Path | None,
    fast: bool,
    model: str | None,
    report: Callable[[str], None],
) -> int:
    """Count the clip into ``state_dir``'s database and report a summary; returns the exit code."""
    clip = video or find_sample(state_dir / "sample")
    config = demo_config(state_dir, clip)
    report(f"counting people in {clip} (model {model or config.detector.model}); Ctrl-C stops early")
    started = time.monotonic()
    progress = DemoProgress(report)
    since = int(time.time()) // 60 * 60
    code = run_agent(config, threading.Event(), on_result=progress, realtime=not fast, model=model)
    elapsed = time.monotonic() - started
    db = open_database(config.database_path)
    try:
        totals = line_totals(db, since=since)
        zones = zone_summary(db, since=since)
    finally:
        db.close()
    rate = progress.frames / max(elapsed, 1e-9)
    report(f"\nprocessed {progress.frames} frames in {elapsed:.1f} s ({rate:.1f} fps)")
    for line in summary_lines(totals, zones, config.sync.display_threshold):
        report(line)
    report(f"counts are in {config.database_path} (tables line_buckets, zone_buckets, events)")
    return code
