"""The truth file: lines with their true crossings, zones with true head counts at chosen frames."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from agent.config import ConfigError, ConfigProblem, LineConfig, ZoneConfig, parse_config

Direction = Literal["in", "out"]
DIRECTIONS: tuple[Direction, ...] = ("in", "out")


@dataclass(frozen=True)
class TrueCrossing:
    """One person crossing one line: the first frame on the new side, and which way."""

    frame: int
    direction: Direction


@dataclass(frozen=True)
class LineTruth:
    name: str
    config: LineConfig
    expected_in: int
    expected_out: int
    crossings: tuple[TrueCrossing, ...] | None = None  # None: the file gives totals only

    def frames(self, direction: Direction) -> tuple[int, ...]:
        """Frames of the true crossings one way (empty when the file lists none)."""
        return tuple(c.frame for c in self.crossings or () if c.direction == direction)


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
    """Read a truth TOML (see tests/data/README.md); every problem is reported with its key.

    ``[lines.NAME]``: ``a``, ``b``, ``in``, ``out`` and optionally ``crossings``, a list of
    ``{frame, direction}`` that must agree with ``in`` and ``out``. ``[zones.NAME]``: ``polygon`` and
    ``samples``, a list of ``{frame, count}``.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [ConfigProblem("(file)", str(path), str(exc))]) from None
    problems: list[ConfigProblem] = []
    lines, zones = [], []
    for name, table in _tables(data, "lines", problems).items():
        key = f"lines -> {name}"
        for direction in DIRECTIONS:
            if not _count(table.get(direction)):
                problems.append(ConfigProblem(f"{key} -> {direction}", repr(table.get(direction)), "must be a count"))
        crossings = _crossings(table, key, problems) if "crossings" in table else None
        config = _geometry(path, "lines", name, {"a": table.get("a"), "b": table.get("b")}, problems)
        if isinstance(config, LineConfig):
            lines.append(LineTruth(name, config, _int(table.get("in")), _int(table.get("out")), crossings))
    for name, table in _tables(data, "zones", problems).items():
        config = _geometry(path, "zones", name, {"polygon": table.get("polygon")}, problems)
        samples = _samples(table.get("samples", []), f"zones -> {name} -> samples", problems)
        if isinstance(config, ZoneConfig):
            zones.append(ZoneTruth(name, config, samples))
    if not data.get("lines") and not data.get("zones"):
        problems.append(ConfigProblem("lines", "{}", "a truth file needs at least one line or zone"))
    if problems:
        raise ConfigError(str(path), problems)
    return Truth(tuple(lines), tuple(zones))


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _int(value: Any) -> int:
    return value if _count(value) else 0


def _tables(data: dict[str, Any], kind: str, problems: list[ConfigProblem]) -> dict[str, dict[str, Any]]:
    section = data.get(kind, {})
    if not isinstance(section, dict):
        problems.append(ConfigProblem(kind, repr(section)[:60], "must be a table of named tables"))
        return {}
    good = {name: table for name, table in section.items() if isinstance(table, dict)}
    for name in section.keys() - good.keys():
        problems.append(ConfigProblem(f"{kind} -> {name}", repr(section[name])[:60], "must be a table"))
    return good


def _crossings(table: dict[str, Any], key: str, problems: list[ConfigProblem]) -> tuple[TrueCrossing, ...]:
    items = table["crossings"]
    if not isinstance(items, list):
        problems.append(ConfigProblem(f"{key} -> crossings", repr(items)[:60], "must be a list of {frame, direction}"))
        return ()
    crossings = []
    for i, item in enumerate(items):
        where = f"{key} -> crossings -> {i}"
        frame = item.get("frame") if isinstance(item, dict) else None
        direction = item.get("direction") if isinstance(item, dict) else None
        if not _count(frame):
            problems.append(ConfigProblem(f"{where} -> frame", repr(frame), "must be a frame number (0 or more)"))
        elif direction not in DIRECTIONS:
            problems.append(ConfigProblem(f"{where} -> direction", repr(direction), 'must be "in" or "out"'))
        else:
            crossings.append(TrueCrossing(frame, direction))
    for direction in DIRECTIONS:
        listed = sum(1 for c in crossings if c.direction == direction)
        stated = table.get(direction)
        if _count(stated) and len(crossings) == len(items) and listed != stated:
            problems.append(
                ConfigProblem(f"{key} -> crossings", f"{listed} {direction}", f"disagrees with {direction} = {stated}")
            )
    return tuple(sorted(crossings, key=lambda c: c.frame))


def _samples(items: Any, key: str, problems: list[ConfigProblem]) -> tuple[tuple[int, int], ...]:
    if not isinstance(items, list):
        problems.append(ConfigProblem(key, repr(items)[:60], "must be a list of {frame, count}"))
        return ()
    samples = []
    for i, item in enumerate(items):
        frame = item.get("frame") if isinstance(item, dict) else None
        count = item.get("count") if isinstance(item, dict) else None
        if not _count(frame):
            problems.append(ConfigProblem(f"{key} -> {i} -> frame", repr(frame), "must be a frame number (0 or more)"))
        elif not _count(count):
            problems.append(ConfigProblem(f"{key} -> {i} -> count", repr(count), "must be a count"))
        else:
            samples.append((frame, count))
    return tuple(samples)


def _geometry(path: Path, kind: str, name: str, table: dict[str, Any], problems: list[ConfigProblem]) -> Any:
    try:
        config = parse_config({"camera": {kind: {name: table}}}, str(path))
    except ConfigError as exc:
        problems.extend(ConfigProblem(p.path.removeprefix("camera -> "), p.value, p.message) for p in exc.problems)
        return None
    return getattr(config.camera, kind)[name]
