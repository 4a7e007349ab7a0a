"""The config reference: rendered from the models, complete, and the checked-in copy up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from agent.config import AgentConfig
from agent.config_reference import COMMAND, field_paths, render, tables

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "docs" / "config-reference.md"


def test_the_checked_in_reference_is_what_the_models_render() -> None:
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert committed == render(), f"docs/config-reference.md is out of date with agent/config.py; run: {COMMAND}"


def test_every_config_field_has_a_description() -> None:
    missing = [path for path, field in field_paths() if not (field.description or "").strip()]
    assert not missing, f"fields without Field(description=...): {', '.join(missing)}"


def test_the_walk_reaches_every_section_and_per_name_entry() -> None:
    paths = {path for path, _ in field_paths()}
    for section in AgentConfig.model_fields:
        assert section in paths
    for key in ("camera.lines.NAME.band", "camera.zones.NAME.seen_grace_s", "camera.masks.NAME.polygon", "mqtt.host"):
        assert key in paths


def test_every_key_has_a_row_in_its_table() -> None:
    text = render()
    sections = set(AgentConfig.model_fields)
    for path, _ in field_paths():
        if path in sections:
            assert f"`[{path}]`" in text
        else:
            assert f"| `{path}` |" in text, path


def test_the_command_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.config_reference"], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout == render()


class _Point(BaseModel):
    x: float = Field(ge=0, description="across | from the left")


class _Section(BaseModel):
    name: str = Field(min_length=1, description="what it is called")
    rate: float = Field(default=2.5, gt=0, le=10, description="per second")
    mode: Literal["a", "b"] = Field(default="a", description="which way")
    size: Annotated[int, Field(ge=1)] = Field(default=3, description="how many")
    tags: list[str] = Field(default_factory=lambda: ["x", "y"], max_length=4, description="labels")
    limit: int | None = Field(default=None, lt=5, description="below <N shown")
    points: dict[str, _Point] = Field(default_factory=dict, description="named points")


class _Root(BaseModel):
    main: _Section = Field(description="the main part")
    extra: _Section | None = Field(default=None, description="an optional part")


def test_a_hand_made_tree_renders_row_by_row() -> None:
    text = render(_Root)
    assert "## `[main]`\n\nThe main part.\n" in text
    assert "## `[extra]` (optional section)\n\nAn optional part.\n" in text
    assert "| `main.name` | string, not empty | *required* | what it is called |" in text
    assert "| `main.rate` | number, 0 < x ≤ 10 | `2.5` | per second |" in text
    assert '| `main.mode` | `"a"` or `"b"` | `"a"` | which way |' in text
    assert "| `main.size` | integer, x ≥ 1 | `3` | how many |" in text
    assert '| `main.tags` | list of string, at most 4 items | `["x", "y"]` | labels |' in text
    assert "| `main.limit` | integer, x < 5 | unset | below &lt;N shown |" in text
    assert "| `main.points` | tables `[main.points.NAME]` | `{}` | named points |" in text
    assert "### `[main.points.NAME]`\n\nNamed points.\n" in text
    assert "| `main.points.NAME.x` | number, x ≥ 0 | *required* | across \\| from the left |" in text


def test_tables_come_in_reading_order_with_entries_after_their_section() -> None:
    assert [t.path for t in tables(_Root)] == ["main", "main.points.NAME", "extra", "extra.points.NAME"]


def test_a_field_without_a_description_is_refused_by_name() -> None:
    class Bare(BaseModel):
        speed: float = 1.0

    class Root(BaseModel):
        part: Bare = Field(default_factory=Bare, description="a part")

    with pytest.raises(ValueError, match=r"part\.speed: the field has no description"):
        render(Root)
