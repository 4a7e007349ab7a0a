"""The runtime registers fleet commands with the sync dispatcher only when [fleet] and [mqtt] are set."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fleet_helpers import device_toml

from agent.config import parse_config
from agent.runtime.fleet import register_fleet
from agent.sync.dispatch import Dispatcher

MQTT = {"host": "broker.invalid", "port": 1883, "tls": False}


def test_fleet_subscribes_the_device_and_each_group_and_runs_a_task(tmp_path: Path) -> None:
    config = parse_config(tomllib.loads(device_toml(tmp_path, mqtt=MQTT, groups='["north", "kiosks"]')))
    dispatcher = Dispatcher()
    assert register_fleet(dispatcher, config) is not None
    assert dispatcher.topic_filters == [
        "retail/v1/acme/store-042/till-1/cmd/#",
        "retail/v1/acme/_fleet/north/cmd/#",
        "retail/v1/acme/_fleet/kiosks/cmd/#",
    ]
    assert dispatcher.task_names == ["fleet"]


def test_without_mqtt_or_fleet_nothing_is_registered(tmp_path: Path) -> None:
    no_mqtt = parse_config(tomllib.loads(device_toml(tmp_path)))
    data = tomllib.loads(device_toml(tmp_path, mqtt=MQTT))
    del data["fleet"]
    no_fleet = parse_config(data)
    for config in (no_mqtt, no_fleet):
        dispatcher = Dispatcher()
        assert register_fleet(dispatcher, config) is None
        assert dispatcher.topic_filters == [] and dispatcher.task_names == []
