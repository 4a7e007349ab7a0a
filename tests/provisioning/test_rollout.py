"""Rollouts end to end: the operator tool against real devices (sync + fleet code) on a real Mosquitto."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sync_broker import Broker, Subscriber, mosquitto_available, wait_until

from agent.config import load_config
from agent.fleet import jobs
from agent.runtime.fleet import register_fleet
from agent.runtime.syncing import topics_of
from agent.storage.audit import entries
from agent.storage.database import open_database
from agent.sync.dispatch import Dispatcher
from agent.sync.mqtt import PahoTransport
from agent.sync.service import SyncService
from provisioning import cli
from provisioning.rollout import state as state_file
from provisioning.rollout.jobs import JobSpec
from provisioning.rollout.runner import job_topics, new_rollout
from provisioning.rollout.targets import DeviceRef
from provisioning.rollout.waves import parse_waves

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DESIRED = "[camera]\ntarget_fps = 4.0\n"


@dataclass
class FleetDevice:
    """One device: its config file and, while it runs, its sync service with the fleet wired in."""

    store: str
    name: str
    path: Path
    accepts_config: bool = True
    service: SyncService | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        config = load_config(self.path)
        dispatcher = Dispatcher()
        self.stop = threading.Event()
        # A device started without a config file cannot take a desired config: it rejects the job.
        register_fleet(dispatcher, config, config_path=self.path if self.accepts_config else None)
        self.service = SyncService(
            config, config.database_path, topics_of(config), PahoTransport, self.stop, dispatcher=dispatcher
        )
        self.service.start()
        service = self.service
        assert wait_until(lambda: service.connected)

    def halt(self) -> None:
        if self.service is not None:
            self.stop.set()
            self.service.join(10)
            self.service = None

    def job(self, job_id: str) -> jobs.Job | None:
        db = open_database(load_config(self.path).database_path)
        try:
            return jobs.get(db, job_id)
        finally:
            db.close()

    def refusals(self) -> list[str]:
        db = open_database(load_config(self.path).database_path)
        try:
            return [str(e.detail.get("reason")) for e in entries(db, action="fleet_command") if e.outcome == "refused"]
        finally:
            db.close()


class Fleet:
    def __init__(self, root: Path, broker: Broker) -> None:
        self.root, self.broker = root, broker
        self.keys = root / "keys"
        assert cli.main(["fleet", "keygen", "--out", str(self.keys)]) == 0
        self.public = (self.keys / "fleet.toml").read_text().split('"')[1]
        self.devices: list[FleetDevice] = []
        mqtt = "".join(f"{k} = {json.dumps(v)}\n" for k, v in broker.mqtt_section().items())
        self.desired = root / "desired.toml"
        self.desired.write_text(DESIRED + "\n[mqtt]\n" + mqtt, encoding="utf-8")
        self._mqtt = mqtt

    def add(self, store: str, name: str, *, accepts_config: bool = True, start: bool = True) -> FleetDevice:
        folder = self.root / name
        folder.mkdir()
        path = folder / "agent.toml"
        path.write_text(
            f'[device]\nid = "{name}"\ntenant = "acme"\nstore = "{store}"\nstate_dir = "{folder / "state"}"\n\n'
            f'[fleet]\npublic_key = "{self.public}"\ngroups = []\n\n[mqtt]\n{self._mqtt}',
            encoding="utf-8",
        )
        device = FleetDevice(store, name, path, accepts_config)
        self.devices.append(device)
        if start:
            device.start()
        return device

    def device_list(self, devices: list[FleetDevice]) -> Path:
        path = self.root / "devices.txt"
        path.write_text("# rollout order\n" + "".join(f"{d.store}/{d.name}\n" for d in devices), encoding="utf-8")
        return path

    def start_args(self, state: Path, rollout_id: str, *extra: str) -> list[str]:
        return [
            "fleet", "rollout", "start", "--state", str(state), "--key", str(self.keys / "fleet.key"),
            "--tenant", "acme", "--broker", f"{self.broker.host}:{self.broker.port}", "--id", rollout_id,
            "--config", str(self.desired), "--version", "7", *extra,
        ]  # fmt: skip

    def close(self) -> None:
        for device in self.devices:
            device.halt()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed on this machine")
    broker = Broker(tmp_path / "broker", anonymous=True)
    broker.start()
    made = Fleet(tmp_path, broker)
    try:
        yield made
    finally:
        made.close()
        broker.kill()


def test_a_rollout_in_waves_reaches_every_device(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devices = [fleet.add("store-1" if i < 3 else "store-2", f"till-{i}") for i in range(5)]
    state_path = tmp_path / "rollout.json"
    code = cli.main(
        [*fleet.start_args(state_path, "cfg7", "--devices", str(fleet.device_list(devices))), "--waves", "1,50%,100%"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    state = state_file.load(state_path)
    assert state.status == "done"
    assert [len(wave) for wave in state.waves] == [1, 2, 2]
    assert [entry.device for entry in state.waves[0]] == ["till-0"]
    assert {entry.state for entry in state.entries()} == {"SUCCEEDED"}
    for device, entry in zip(devices, state.entries(), strict=True):
        assert load_config(device.path).camera.target_fps == 4.0
        job = device.job(entry.job_id)
        assert job is not None and job.state.value == "SUCCEEDED"
        assert load_config(device.path).device.id == device.name  # each kept its own [device]
    assert "status done" in out and "100%" in out
    # The same rollout id again would collide with job ids the devices have seen: refused up front.
    again = tmp_path / "again.json"
    assert cli.main([*fleet.start_args(again, "cfg7", "--devices", str(fleet.device_list(devices)))]) == 2
    assert "choose another --id" in capsys.readouterr().err
    assert not again.exists()


def test_a_rollout_of_a_store_targets_the_devices_with_a_birth(fleet: Fleet, tmp_path: Path) -> None:
    inside = [fleet.add("store-9", f"kiosk-{i}") for i in range(2)]
    outside = fleet.add("store-8", "kiosk-x")
    state_path = tmp_path / "store.json"
    code = cli.main([*fleet.start_args(state_path, "cfg-store", "--store", "store-9"), "--waves", "1,100%"])
    assert code == 0
    state = state_file.load(state_path)
    assert sorted(entry.device for entry in state.entries()) == [d.name for d in inside]
    assert load_config(outside.path).camera.target_fps != 4.0


def test_a_rollout_stops_at_its_abort_threshold(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devices = [fleet.add("store-1", f"till-{i}", accepts_config=i not in (2, 3)) for i in range(8)]
    state_path = tmp_path / "rollout.json"
    args = fleet.start_args(state_path, "cfg-abort", "--devices", str(fleet.device_list(devices)))
    code = cli.main([*args, "--waves", "1,50%,100%", "--max-failure-rate", "25%"])
    out = capsys.readouterr().out
    assert code == 1, out
    state = state_file.load(state_path)
    assert state.status == "aborted"
    assert "ABORTED after wave 2" in out and "1 further wave(s) not sent" in out
    assert [entry.state for entry in state.waves[1]] == ["SUCCEEDED", "REJECTED", "REJECTED"]
    assert not any(entry.sent for entry in state.waves[2])
    for device in devices[4:]:
        assert device.job(f"cfg-abort-{devices.index(device) + 1}") is None  # never reached
        assert load_config(device.path).camera.target_fps != 4.0
    # The aborted rollout does not resume.
    assert (
        cli.main(["fleet", "rollout", "resume", "--state", str(state_path), "--key", str(fleet.keys / "fleet.key")])
        == 1
    )


def test_resume_continues_after_the_tool_is_killed(fleet: Fleet, tmp_path: Path) -> None:
    devices = [fleet.add("store-1", f"till-{i}") for i in range(4)]
    state_path = tmp_path / "rollout.json"
    args = fleet.start_args(state_path, "cfg-kill", "--devices", str(fleet.device_list(devices)))
    tool = subprocess.Popen(
        [sys.executable, "-m", "provisioning.cli", *args, "--waves", "1,100%", "--soak", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        # Killed while it waits between the canary and the rest.
        assert wait_until(lambda: state_path.exists() and state_file.load(state_path).wave == 1, timeout=30)
        tool.send_signal(signal.SIGKILL)
        tool.wait(10)
    finally:
        if tool.poll() is None:
            tool.kill()
    half = state_file.load(state_path)
    assert half.status == "running" and [e.sent for e in half.entries()] == [True, False, False, False]
    code = cli.main(["fleet", "rollout", "resume", "--state", str(state_path), "--key", str(fleet.keys / "fleet.key")])
    assert code == 0
    done = state_file.load(state_path)
    assert done.status == "done" and {e.state for e in done.entries()} == {"SUCCEEDED"}
    assert all(load_config(d.path).camera.target_fps == 4.0 for d in devices)
    assert devices[0].refusals() == []  # the canary's job was not sent again


def test_cancel_stops_the_rollout_and_cancels_the_unfinished_jobs(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    online = [fleet.add("store-1", f"till-{i}") for i in range(2)]
    away = fleet.add("store-1", "till-away")
    away.halt()  # known to the broker (its session keeps QoS 1 commands), offline for now
    later = fleet.add("store-1", "till-later")
    state_path = tmp_path / "rollout.json"
    args = fleet.start_args(state_path, "cfg-cancel", "--devices", str(fleet.device_list([*online, away, later])))
    tool = subprocess.Popen(
        [sys.executable, "-m", "provisioning.cli", *args, "--waves", "1,3,100%", "--wave-timeout", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wave 2 waits for the offline device once the online one's job has ended.
        assert wait_until(
            lambda: (
                state_path.exists()
                and [(e.sent, e.state) for e in state_file.load(state_path).entries()][1:3]
                == [(True, "SUCCEEDED"), (True, None)]
            ),
            timeout=30,
        )
        code = cli.main(
            ["fleet", "rollout", "cancel", "--state", str(state_path), "--key", str(fleet.keys / "fleet.key"),
             "--wait", "1"]
        )  # fmt: skip
        assert code == 1
        assert tool.wait(20) == 1  # the running tool saw the cancel and stopped
    finally:
        if tool.poll() is None:
            tool.kill()
    out = capsys.readouterr().out
    assert "1 cancel command(s) sent" in out and "1 job(s) never sent" in out
    state = state_file.load(state_path)
    assert state.status == "canceled"
    assert [e.sent for e in state.entries()] == [True, True, True, False]
    assert later.job("cfg-cancel-4") is None
    # Back online, the device finds the job and its cancel: the job is canceled, never run.
    away.start()
    assert wait_until(lambda: (job := away.job("cfg-cancel-3")) is not None and job.finished, timeout=20)
    job = away.job("cfg-cancel-3")
    assert job is not None and job.state.value == "CANCELED"
    assert load_config(away.path).camera.target_fps != 4.0
    assert cli.main(["fleet", "rollout", "status", "--state", str(state_path), "--wait", "10"]) == 0
    table = capsys.readouterr().out
    assert state_file.load(state_path).entries()[2].state == "CANCELED", table


def test_a_silent_canary_counts_as_failed_once_the_wave_times_out(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = fleet.add("store-1", "till-off", start=False)  # never connected: the command reaches nobody
    others = [fleet.add("store-1", f"till-{i}") for i in range(2)]
    state_path = tmp_path / "rollout.json"
    args = fleet.start_args(state_path, "cfg-silent", "--devices", str(fleet.device_list([silent, *others])))
    code = cli.main([*args, "--waves", "1,100%", "--wave-timeout", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert "wave 1: 1 job(s) did not end within 2 s" in out
    assert "ABORTED after wave 1: 1 of 1 started jobs failed" in out
    assert all(device.job("cfg-silent-2") is None and device.job("cfg-silent-3") is None for device in others)


def test_a_model_rollout_publishes_the_chunks_once_and_sends_the_model_job(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # These devices run no detector, so they reject the model job: the canary stops the rollout.
    devices = [fleet.add("store-1", f"till-{i}") for i in range(3)]
    model = tmp_path / "model.onnx"
    model.write_bytes(os.urandom(5000))
    state_path = tmp_path / "model.json"
    args = fleet.start_args(state_path, "mdl", "--devices", str(fleet.device_list(devices)))
    at = args.index("--config")
    args[at : at + 4] = ["--model", str(model), "--family", "ssd", "--licence", "MIT", "--chunk-size", "1024"]
    code = cli.main([*args, "--waves", "1,100%"])
    out = capsys.readouterr().out
    assert code == 1, out
    state = state_file.load(state_path)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert state.job_type == "model" and state.job_body["sha256"] == digest and state.job_body["chunks"] == 5
    assert state.status == "aborted" and state.entries()[0].reason == "no_detector"
    assert devices[1].job("mdl-2") is None
    chunks = Subscriber(fleet.broker, client_id="chunk-reader").connect()
    try:
        chunks.subscribe(f"retail/v1/acme/_artifacts/{digest}/+")
        received = chunks.wait_for(lambda messages: len(messages) >= 5)
        assert b"".join(m.payload for m in sorted(received, key=lambda m: int(m.topic.rsplit("/", 1)[1]))) == (
            model.read_bytes()
        )
    finally:
        chunks.close()


def test_clear_removes_the_retained_statuses_of_an_ended_rollout(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devices = [fleet.add("store-1", f"till-{i}") for i in range(2)]
    state_path = tmp_path / "rollout.json"
    assert cli.main([*fleet.start_args(state_path, "cfg8", "--devices", str(fleet.device_list(devices)))]) == 0
    for device in devices:
        device.halt()  # no device republishes a status meanwhile
    expected = set(job_topics(state_file.load(state_path)))
    readers = iter(range(100))

    def retained_statuses() -> set[str]:
        reader = Subscriber(fleet.broker, client_id=f"status-reader-{next(readers)}")
        reader.connect().subscribe("retail/v1/acme/store-1/+/jobs/#")
        received = reader.wait_for(lambda got: {m.topic for m in got} >= expected, timeout=1.5)
        reader.close()
        return {m.topic for m in received if m.retain and m.payload}

    assert retained_statuses() == expected and len(expected) == 2
    capsys.readouterr()
    assert cli.main(["fleet", "rollout", "clear", "--state", str(state_path)]) == 0
    assert "2 retained job status topic(s) cleared" in capsys.readouterr().out
    assert retained_statuses() == set()
    assert state_file.load(state_path).status == "done"  # the state file keeps the outcome


def test_clear_is_refused_while_the_rollout_runs(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_path = tmp_path / "rollout.json"
    state = new_rollout(
        "run1",
        tenant="acme",
        broker=f"{fleet.broker.host}:{fleet.broker.port}",
        job=JobSpec("ping", {}),
        targets=[DeviceRef("store-1", "till-0")],
        marks=parse_waves("100%"),
        max_failure_rate=0.1,
        wave_timeout_s=10,
        soak_s=0,
        ttl_s=600,
    )
    state_file.save(state, state_path)
    assert cli.main(["fleet", "rollout", "clear", "--state", str(state_path)]) == 2
    assert "still running" in capsys.readouterr().err
