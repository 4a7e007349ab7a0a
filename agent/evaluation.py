"""Scoring counts against a hand-made truth file (``retail-agent eval``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError, ConfigProblem, LineConfig, ZoneConfig, parse_config
from agent.vision.count import CountReport, count_file


@dataclass(frozen=True)
class LineTruth:
    name: str
    config: LineConfig
    expected_in: int
    expected_out: int


@dataclass(frozen=True)
class ZoneTruth:
    name: str
    config: ZoneConfig
    samples: tuple[tuple[int, int], ...]  # (frame, people inside)


@dataclass(frozen=True)
class Truth:
    lines: tuple[LineTruth, ...]
    zones: tuple[ZoneTruth, ...]

    def line_configs(self) -> dict[str, LineConfig]:
        return {line.name: line.config for line in self.lines}

    def zone_configs(self) -> dict[str, ZoneConfig]:
        return {zone.name: zone.config for zone in self.zones}


def load_truth(path: Path) -> Truth:
    """Read a truth TOML: ``[lines.NAME]`` a, b, in, out; optional ``[zones.NAME]`` polygon, samples."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [ConfigProblem("(file)", str(path), str(exc))]) from None
    problems: list[ConfigProblem] = []
    lines, zones = [], []
    for name, table in data.get("lines", {}).items():
        for key in ("in", "out"):
            if not isinstance(table.get(key), int) or table[key] < 0:
                problems.append(ConfigProblem(f"lines -> {name} -> {key}", repr(table.get(key)), "must be a count"))
        geometry = {"a": table.get("a"), "b": table.get("b")}
        config = _geometry(path, "lines", name, geometry, problems)
        if isinstance(config, LineConfig):
            lines.append(LineTruth(name, config, int(table.get("in", 0)), int(table.get("out", 0))))
    for name, table in data.get("zones", {}).items():
        config = _geometry(path, "zones", name, {"polygon": table.get("polygon")}, problems)
        samples = tuple((int(s["frame"]), int(s["count"])) for s in table.get("samples", []))
        if isinstance(config, ZoneConfig):
            zones.append(ZoneTruth(name, config, samples))
    if not data.get("lines") and not data.get("zones"):
        problems.append(ConfigProblem("lines", "{}", "a truth file needs at least one line or zone"))
    if problems:
        raise ConfigError(str(path), problems)
    return Truth(tuple(lines), tuple(zones))


def _geometry(path: Path, kind: str, name: str, table: dict[str, Any], problems: list[ConfigProblem]) -> Any:
    try:
        config = parse_config({"camera": {kind: {name: table}}}, str(path))
    except ConfigError as exc:
        problems.extend(ConfigProblem(p.path.removeprefix("camera -> "), p.value, p.message) for p in exc.problems)
        return None
    return getattr(config.camera, kind)[name]


@dataclass(frozen=True)
class LineScore:
    name: str
    expected: tuple[int, int]
    counted: tuple[int, int]

    @property
    def abs_error(self) -> int:
        return abs(self.counted[0] - self.expected[0]) + abs(self.counted[1] - self.expected[1])

    @property
    def accuracy(self) -> float:
        return accuracy(self.abs_error, sum(self.expected))


@dataclass(frozen=True)
class ZoneScore:
    name: str
    samples: int
    mean_abs_error: float
    mean_expected: float


def accuracy(abs_error: int, truth_total: int) -> float:
    """1 − Σ|error| / Σtruth, floored at 0; 1.0 when both are zero."""
    if truth_total == 0:
        return 1.0 if abs_error == 0 else 0.0
    return max(0.0, 1.0 - abs_error / truth_total)


@dataclass(frozen=True)
class EvalResult:
    model: str
    frames: int
    seconds: float
    lines: tuple[LineScore, ...]
    zones: tuple[ZoneScore, ...]

    @property
    def line_accuracy(self) -> float:
        return accuracy(sum(s.abs_error for s in self.lines), sum(sum(s.expected) for s in self.lines))

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "accuracy": round(self.line_accuracy, 4),
            "lines": {
                s.name: {
                    "expected": {"in": s.expected[0], "out": s.expected[1]},
                    "counted": {"in": s.counted[0], "out": s.counted[1]},
                    "error": {"in": s.counted[0] - s.expected[0], "out": s.counted[1] - s.expected[1]},
                    "accuracy": round(s.accuracy, 4),
                }
                for s in self.lines
            },
            "zones": {
                z.name: {
                    "samples": z.samples,
                    "mae": round(z.mean_abs_error, 3),
                    "mean_truth": round(z.mean_expected, 3),
                }
                for z in self.zones
            },
        }

    def describe(self) -> str:
        rows = [f"model {self.model}: {self.frames} frames in {self.seconds:.1f} s"]
        rows.append(f"{'line':<14}{'in':>12}{'out':>12}{'accuracy':>10}")
        for s in self.lines:
            rows.append(
                f"{s.name:<14}{s.counted[0]:>5} of {s.expected[0]:<4}{s.counted[1]:>5} of {s.expected[1]:<4}"
                f"{s.accuracy:>10.1%}"
            )
        rows.append(f"line-crossing accuracy (1 - sum|error| / sum truth): {self.line_accuracy:.1%}")
        for z in self.zones:
            rows.append(
                f"zone {z.name}: mean absolute error {z.mean_abs_error:.2f} people over {z.samples} frames "
                f"(truth mean {z.mean_expected:.2f})"
            )
        return "\n".join(rows)


def score(truth: Truth, report: CountReport) -> EvalResult:
    """Compare a run's counts with the truth, line by line and zone sample by zone sample."""
    lines = tuple(
        LineScore(
            t.name,
            (t.expected_in, t.expected_out),
            (report.lines[t.name]["in"], report.lines[t.name]["out"]),
        )
        for t in truth.lines
    )
    zones = []
    for z in truth.zones:
        counts = report.zone_frames[z.name]
        pairs = [(counts[frame], expected) for frame, expected in z.samples if frame < len(counts)]
        mae = sum(abs(c - e) for c, e in pairs) / len(pairs) if pairs else 0.0
        mean = sum(e for _, e in pairs) / len(pairs) if pairs else 0.0
        zones.append(ZoneScore(z.name, len(pairs), mae, mean))
    return EvalResult(report.model_name, report.frames, report.seconds, lines, tuple(zones))


def evaluate_file(config: AgentConfig, truth_path: Path, video: Path, model: str | None = None) -> EvalResult:
    """``retail-agent eval``: count ``video`` on the truth file's lines and zones, and score the counts."""
    truth = load_truth(truth_path)
    camera = config.camera.model_copy(update={"lines": truth.line_configs(), "zones": truth.zone_configs()})
    return score(truth, count_file(config.model_copy(update={"camera": camera}), video, model))
