"""The config reference: every key of the config tree with its type, default and description, as Markdown.

Rendered from the pydantic models in :mod:`agent.config`, so the reference says exactly what the loader
accepts. ``python -m agent.config_reference > docs/config-reference.md`` writes the checked-in copy; a
test fails when that copy differs from what this module renders.
"""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agent.config import AgentConfig

COMMAND = "python -m agent.config_reference > docs/config-reference.md"
"""How the checked-in reference is regenerated."""

NAME = "NAME"
"""Stands for the user's own name of a line, zone or mask in a key path."""

_SCALARS: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}


@dataclass(frozen=True)
class Row:
    """One key of a table: its dotted path, type, default and description, as Markdown cells."""

    key: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Table:
    """One TOML table of the config: its header path, what it is for, whether it may be left out, its keys."""

    path: str
    description: str
    optional: bool
    rows: tuple[Row, ...]


def render(root: type[BaseModel] = AgentConfig) -> str:
    """The whole reference as Markdown: one table per section, nested tables after their section."""
    out = [
        "# Config reference",
        "",
        f"<!-- Generated from agent/config.py by `{COMMAND}`; do not edit by hand. -->",
        "",
        "Every key of the agent's TOML config file (`retail-agent check-config FILE` validates one). A key",
        "left out takes its default; *required* keys have none. `NAME` in a key path is a name of your own",
        "(1-64 letters, digits, `_`, `.` or `-`), e.g. `[camera.lines.entrance]`. Types are strict: `true` is",
        'not an integer and `"1883"` is not a number, while an integer is fine where a number is expected.',
        "A path is a string; relative paths are resolved as the description says.",
        "",
    ]
    for table in tables(root):
        level = "##" if table.path.count(".") == 0 else "###"
        optional = " (optional section)" if table.optional else ""
        out += [f"{level} `[{table.path}]`{optional}", ""]
        if table.description:
            out += [_sentence(table.description), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        out += [f"| `{r.key}` | {r.type} | {r.default} | {r.description} |" for r in table.rows]
        out.append("")
    return "\n".join(out)


def tables(root: type[BaseModel] = AgentConfig) -> list[Table]:
    """The config's tables in reading order: each section, then the per-name tables it holds."""
    found: list[Table] = []
    for name, field in root.model_fields.items():
        model = _model_of(field.annotation)
        if model is None:
            raise ValueError(f"{name}: a top-level key must be a section")
        _collect(model, name, _describe(name, field), _is_optional(field.annotation), found)
    return found


def _collect(model: type[BaseModel], path: str, description: str, optional: bool, found: list[Table]) -> None:
    rows, nested = [], []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}"
        entry = _entry_model(field.annotation)
        rows.append(Row(key, _type_cell(field, entry, key), _default_cell(field), _cell(_describe(key, field))))
        if entry is not None:
            nested.append((entry, f"{key}.{NAME}", _describe(key, field)))
    found.append(Table(path, description, optional, tuple(rows)))
    for entry, entry_path, entry_description in nested:
        _collect(entry, entry_path, entry_description, False, found)


def _describe(key: str, field: FieldInfo) -> str:
    text = (field.description or "").strip()
    if not text:
        raise ValueError(f"{key}: the field has no description")
    return text


def _entry_model(annotation: Any) -> type[BaseModel] | None:
    """The model of each entry of a ``dict[str, Model]`` key (lines, zones, masks), else None."""
    annotation = _strip(annotation)
    if get_origin(annotation) is dict:
        return _model_of(get_args(annotation)[1])
    return None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _options(annotation: Any) -> list[Any]:
    """The alternatives of a union (``None`` left out), or the annotation itself."""
    annotation = _strip(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [option for arg in get_args(annotation) if arg is not type(None) for option in _options(arg)]
    return [annotation]


def _is_optional(annotation: Any) -> bool:
    annotation = _strip(annotation)
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def type_name(annotation: Any, entry_path: str = "") -> str:
    """How a TOML user writes a value of ``annotation``, in words (Markdown-safe)."""
    names = [_one_type(option, entry_path) for option in _options(annotation)]
    return " or ".join(names)


def _one_type(annotation: Any, entry_path: str) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " or ".join(f"`{_toml(value)}`" for value in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(arg) for arg in args) + "]"
    if origin is dict:
        entry = _model_of(args[1])
        if entry is not None:
            return f"tables `[{entry_path}]`"
        return f"table of {type_name(args[1])}"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise ValueError(f"no reference wording for the type {annotation!r}")


def _type_cell(field: FieldInfo, entry: type[BaseModel] | None, key: str) -> str:
    text = type_name(field.annotation, f"{key}.{NAME}" if entry is not None else "")
    limits = _limits(field)
    return _cell(f"{text}, {limits}" if limits else text)


def _limits(field: FieldInfo) -> str:
    """The field's numeric range and length limits, e.g. ``0 < x ≤ 120`` or ``at least 3 items``."""
    low: tuple[str, str] | None = None  # ("<" or "≤", bound): the bound lies below x
    high: tuple[str, str] | None = None
    shortest: int | None = None
    longest: int | None = None
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            low = ("<", _number(item.gt))
        elif isinstance(item, annotated_types.Ge):
            low = ("≤", _number(item.ge))
        elif isinstance(item, annotated_types.Lt):
            high = ("<", _number(item.lt))
        elif isinstance(item, annotated_types.Le):
            high = ("≤", _number(item.le))
        elif isinstance(item, annotated_types.MinLen):
            shortest = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            longest = item.max_length
    parts = []
    if low and high:
        parts.append(f"{low[1]} {low[0]} x {high[0]} {high[1]}")
    elif low:
        parts.append(f"x {'>' if low[0] == '<' else '≥'} {low[1]}")
    elif high:
        parts.append(f"x {high[0]} {high[1]}")
    unit = "characters" if _strip(field.annotation) is str else "items"
    if shortest == 1 and longest is None and unit == "characters":
        parts.append("not empty")
    elif shortest is not None and longest is not None:
        parts.append(f"{shortest} to {longest} {unit}")
    elif shortest is not None:
        parts.append(f"at least {shortest} {unit}")
    elif longest is not None:
        parts.append(f"at most {longest} {unit}")
    return ", ".join(parts)


def _default_cell(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "*required*"
    else:
        value = field.default
    if value is None:
        return "unset"
    return _cell(f"`{_toml(value)}`")


def _toml(value: Any) -> str:
    """``value`` written as in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"no TOML wording for the default {value!r}")


def _number(value: object) -> str:
    return repr(value)


def _sentence(text: str) -> str:
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell: no pipes, no line breaks."""
    text = " ".join(text.split()).replace("|", "\\|")
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def field_paths(root: type[BaseModel] = AgentConfig) -> Iterator[tuple[str, FieldInfo]]:
    """Every key path of the tree with its field: sections, their keys and the keys of per-name entries."""
    yield from _walk(root, "")


def _walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        yield key, field
        section = _model_of(field.annotation)
        if section is not None:
            yield from _walk(section, f"{key}.")
        entry = _entry_model(field.annotation)
        if entry is not None:
            yield from _walk(entry, f"{key}.{NAME}.")


def main() -> int:
    """Write the reference to standard output."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
