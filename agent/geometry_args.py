"""Lines and zones given on the command line (``--line``, ``--zone``), validated like the config file's."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agent.config import AgentConfig, ConfigError, LineConfig, ZoneConfig, parse_config

logger = logging.getLogger(__name__)


class GeometryArgError(ValueError):
    """A ``--line`` or ``--zone`` argument that cannot be used; the message says which and why."""


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise GeometryArgError(f"{what}: coordinates must be numbers, got {text!r}") from None


def parse_line_arg(text: str) -> tuple[str, LineConfig]:
    """``NAME=x1,y1,x2,y2`` → a named line."""
    name, sep, coords = text.partition("=")
    values = _numbers(coords, f"--line {name}")
    if not sep or not name or len(values) != 4:
        raise GeometryArgError(f"--line must be NAME=x1,y1,x2,y2, got {text!r}")
    line: LineConfig = _validated("lines", name, {"a": values[:2], "b": values[2:]})
    return name, line


def parse_zone_arg(text: str) -> tuple[str, ZoneConfig]:
    """``NAME=x1,y1;x2,y2;x3,y3...`` → a named polygon zone."""
    name, sep, coords = text.partition("=")
    points = [_numbers(p, f"--zone {name}") for p in coords.split(";") if p.strip()]
    if not sep or not name or len(points) < 3 or any(len(p) != 2 for p in points):
        raise GeometryArgError(f"--zone must be NAME=x1,y1;x2,y2;x3,y3[;...], got {text!r}")
    zone: ZoneConfig = _validated("zones", name, {"polygon": points})
    return name, zone


def _validated(kind: str, name: str, data: dict[str, Any]) -> Any:
    try:
        config = parse_config({"camera": {kind: {name: data}}}, "command line")
    except ConfigError as exc:
        raise GeometryArgError("; ".join(str(p) for p in exc.problems)) from None
    return getattr(config.camera, kind)[name]


def with_rules(config: AgentConfig, lines: Sequence[str] = (), zones: Sequence[str] = ()) -> AgentConfig:
    """``config`` with the command line's lines and zones added (a name given twice: the argument wins)."""
    if not lines and not zones:
        return config
    camera = config.camera.model_copy(
        update={
            "lines": {**config.camera.lines, **dict(parse_line_arg(t) for t in lines)},
            "zones": {**config.camera.zones, **dict(parse_zone_arg(t) for t in zones)},
        }
    )
    return config.model_copy(update={"camera": camera})


def with_family(config: AgentConfig, family: str | None) -> AgentConfig:
    """``config`` with the detector's decoder family set (for an ONNX file outside the manifest)."""
    if not family:
        return config
    return config.model_copy(update={"detector": config.detector.model_copy(update={"family": family})})
