"""Lines and zones from the command line are validated like the config file's."""

from __future__ import annotations

import pytest

from agent.config import AgentConfig
from agent.geometry_args import GeometryArgError, parse_line_arg, parse_zone_arg, with_family, with_rules


def test_line_argument_is_name_and_four_numbers() -> None:
    name, line = parse_line_arg("door=10,20,300,20.5")
    assert name == "door"
    assert line.a == (10, 20)
    assert line.b == (300, 20.5)


@pytest.mark.parametrize("text", ["door", "door=1,2,3", "=1,2,3,4", "door=1,2,x,4", "door=1,2,1,2"])
def test_bad_line_arguments_are_usage_errors(text: str) -> None:
    with pytest.raises(GeometryArgError):
        parse_line_arg(text)


def test_zone_argument_is_a_polygon() -> None:
    name, zone = parse_zone_arg("till=0,0;100,0;100,50")
    assert name == "till"
    assert zone.polygon == [(0, 0), (100, 0), (100, 50)]


@pytest.mark.parametrize("text", ["till=0,0;100,0", "till=0,0;1;2,2", "till"])
def test_bad_zone_arguments_are_usage_errors(text: str) -> None:
    with pytest.raises(GeometryArgError):
        parse_zone_arg(text)


def test_rules_from_arguments_are_added_to_the_config_and_win_on_a_shared_name() -> None:
    base = with_rules(AgentConfig(), ["door=0,0,10,10"])
    config = with_rules(base, ["door=5,5,20,20", "exit=1,1,2,2"], ["till=0,0;10,0;10,10"])
    assert set(config.camera.lines) == {"door", "exit"}
    assert config.camera.lines["door"].a == (5, 5)
    assert set(config.camera.zones) == {"till"}
    assert with_rules(base) is base


def test_a_family_is_set_only_when_given() -> None:
    config = AgentConfig()
    assert with_family(config, None) is config
    assert with_family(config, "yolox").detector.family == "yolox"
