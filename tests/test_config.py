from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, load_config, parse_config


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "test.toml")
    return [str(p) for p in caught.value.problems]


def test_empty_file_gives_the_embedded_defaults() -> None:
    config = parse_config({})
    assert config == AgentConfig()
    assert config.detector.model == "ssdlite-pedestrian"
    assert config.counting.hold_frames >= 1


def test_a_full_config_loads_into_typed_objects(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        """
[device]
id = "kiosk-7"
state_dir = "state"

[camera]
source = "rtsp://camera.local/stream"
target_fps = 8

[camera.lines.entrance]
a = [0.1, 0.5]
b = [0.9, 0.5]
net = true

[camera.zones.till]
polygon = [[10, 10], [200, 10], [200, 120]]
queue = true

[detector]
model = "yolox-nano"
threads = 2
"""
    )
    config = load_config(path)
    assert config.device.id == "kiosk-7"
    assert config.device.state_dir == (tmp_path / "state").resolve()
    assert config.database_path == (tmp_path / "state" / "agent.db").resolve()
    assert config.camera.lines["entrance"].a == (0.1, 0.5)
    assert config.camera.lines["entrance"].net is True
    assert config.camera.zones["till"].queue is True
    assert config.detector.threads == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"camera": {"lines": {"entrance": {"a": [1], "b": [2, 3]}}}},
            "camera -> lines -> entrance -> a: must be two numbers",
        ),
        (
            {"camera": {"lines": {"entrance": {"a": [1, "x"], "b": [2, 3]}}}},
            "camera -> lines -> entrance -> a: must be two numbers",
        ),
        (
            {"camera": {"lines": {"entrance": {"a": [1, 2], "b": [1, 2]}}}},
            "camera -> lines -> entrance -> b: must differ from a",
        ),
        ({"camera": {"lines": {"entrance": {"a": [1, 2]}}}}, "camera -> lines -> entrance -> b: is required"),
        (
            {"camera": {"zones": {"till": {"polygon": [[0, 0], [1, 1]]}}}},
            "camera -> zones -> till -> polygon:",
        ),
        ({"camera": {"target_fps": 0}}, "camera -> target_fps:"),
        ({"camera": {"colour": "red"}}, "camera -> colour: unknown key"),
        ({"detector": {"threads": 0}}, "detector -> threads:"),
        ({"detector": {"family": "rcnn"}}, "detector -> family:"),
        ({"device": {"id": "bad id/with slash"}}, "device -> id:"),
        ({"camera": {"lines": {"bad name": {"a": [1, 2], "b": [3, 4]}}}}, "camera -> lines:"),
    ],
)
def test_each_bad_key_is_named_with_its_problem(data: dict, expected: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_bad_key_is_reported_at_once() -> None:
    problems = problems_of({"camera": {"target_fps": -1, "queue_size": 0}, "detector": {"threads": 99}})
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {
        "camera -> target_fps",
        "camera -> queue_size",
        "detector -> threads",
    }


def test_problem_shows_the_value_it_got() -> None:
    (problem,) = problems_of({"camera": {"target_fps": "fast"}})
    assert "'fast'" in problem


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("[camera]\nsource = 0\n", nullcontext()),
        ("[camera\nsource = 0\n", pytest.raises(ConfigError, match="not valid TOML")),
        ("[camera]\nsource = 0\nsource = 1\n", pytest.raises(ConfigError, match="not valid TOML")),
    ],
)
def test_toml_syntax_errors_are_config_errors(tmp_path: Path, text: str, outcome) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with outcome:
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "absent.toml")
