"""A desired document without [device] or [fleet] keeps the device's own, so one document suits a fleet."""

from __future__ import annotations

from pathlib import Path

from fleet_helpers import NOW, command, device_toml, signed

from agent.config import load_config
from agent.contract.payloads import JobState
from agent.fleet.service import FleetAgent


def test_a_document_without_device_and_fleet_keeps_the_devices_own(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(device_toml(tmp_path / "state", groups='["north"]'), encoding="utf-8")
    before = load_config(path)
    fleet = FleetAgent(lambda: before, config_path=path)
    desired = "[camera]\ntarget_fps = 4.0\n\n[camera.lines.door]\na = [0.1, 0.5]\nb = [0.9, 0.5]\n"
    job = fleet.process("t", signed(command("config", {"version": 5, "toml": desired}, command_id="cfg-5")), NOW)
    fleet.close()
    assert job is not None and job.state is JobState.SUCCEEDED, job
    after = load_config(path)
    assert after.device == before.device
    assert after.fleet == before.fleet and after.fleet is not None and after.fleet.groups == ["north"]
    assert after.camera.target_fps == 4.0 and "door" in after.camera.lines


def test_a_document_without_device_is_still_validated_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(device_toml(tmp_path / "state"), encoding="utf-8")
    before_text = path.read_bytes()
    config = load_config(path)
    fleet = FleetAgent(lambda: config, config_path=path)
    job = fleet.process("t", signed(command("config", {"version": 6, "toml": "[camera]\nbogus = 1\n"})), NOW)
    fleet.close()
    assert job is not None and job.state is JobState.REJECTED and job.reason == "invalid_config"
    assert path.read_bytes() == before_text
