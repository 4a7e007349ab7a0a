"""Models delivered over a real Mosquitto to a running agent counting the sample clip with real ONNX models.

The operator tool publishes retained chunks and the signed job; the agent downloads, verifies,
swaps the detector between two frames, health-checks it and keeps it or rolls back by itself.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import paho.mqtt.client as paho
import pytest
from onnx import TensorProto, helper
from paho.mqtt.enums import CallbackAPIVersion
from sync_broker import Broker, wait_until

from agent.config import load_config
from agent.contract.topics import artifact_chunk
from agent.fleet.active_model import read_active
from agent.runtime.run import Runtime
from agent.vision.models import load_manifest
from provisioning import cli
from provisioning.fleet_models import ArtifactManifest, artifact_manifest, publish_artifact, publish_model_job

pytestmark = pytest.mark.integration

TENANT, STORE, DEVICE = "acme", "store-042", "till-1"
TARGET = f"device:{DEVICE}"


def fleet_keys(folder: Path) -> tuple[Path, str]:
    assert cli.main(["fleet", "keygen", "--out", str(folder)]) == 0
    return folder / "fleet.key", (folder / "fleet.toml").read_text().split('"')[1]


def agent_config(tmp_path: Path, broker: Broker, clip: Path, public_key: str, check_s: float = 3.0) -> Path:
    mqtt = "".join(f"{k} = {json.dumps(v)}\n" for k, v in broker.mqtt_section().items())
    text = f"""
[device]
id = "{DEVICE}"
tenant = "{TENANT}"
store = "{STORE}"
state_dir = "{tmp_path / "state"}"

[camera]
source = "{clip}"
realtime = true

[camera.zones.floor]
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]

[fleet]
public_key = "{public_key}"
model_check_s = {check_s}
model_min_rate_ratio = 0.2

[mqtt]
{mqtt}
[runtime]
status_interval_s = 0.5
"""
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Device:
    """A running agent in this process."""

    runtime: Runtime
    thread: threading.Thread
    stop: threading.Event
    frames_seen: list[tuple[str, int]] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.runtime.counting.stats.frames

    def record(self, status: dict[str, Any]) -> None:
        self.frames_seen.append((f"{status.get('state')}/{status.get('step')}", self.frames))


@pytest.fixture
def device(tmp_path: Path, fleet_broker: Broker, vtest_path: Path) -> Iterator[tuple[Device, Path]]:
    key, public = fleet_keys(tmp_path / "keys")
    path = agent_config(tmp_path, fleet_broker, vtest_path, public)
    stop = threading.Event()
    runtime = Runtime(load_config(path), stop, config_path=path)
    thread = threading.Thread(target=runtime.run, name="agent", daemon=True)
    thread.start()
    running = Device(runtime, thread, stop)
    try:
        assert wait_until(lambda: runtime.sync is not None and runtime.sync.status().connected, 60)
        assert wait_until(lambda: runtime.counting.reference_image is not None, 60)  # it has seen a person
        yield running, key
    finally:
        stop.set()
        thread.join(30)


YOLOX = {"family": "yolox", "licence": "Apache-2.0", "name": "yolox-nano"}
SILENT = {"family": "ssd", "licence": "MIT"}


def send_model(
    manifest: ArtifactManifest,
    key: Path,
    broker: Broker,
    job_id: str,
    on_status: Callable[[dict[str, Any]], None],
    about: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    _command, statuses = publish_model_job(
        manifest,
        key_path=key,
        tenant=TENANT,
        target=TARGET,
        host=broker.host,
        port=broker.port,
        store=STORE,
        family=(about or {}).get("family"),
        licence=(about or {}).get("licence"),
        name=(about or {}).get("name"),
        command_id=job_id,
        wait=True,
        timeout_s=120,
        on_status=on_status,
    )
    return statuses


def retained_state(broker: Broker) -> dict[str, Any]:
    """The retained birth on the device's state topic, as a fresh subscriber gets it."""
    got: list[dict[str, Any]] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="state-reader")
    client.on_message = lambda _c, _u, message: got.append(json.loads(message.payload))
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe(f"retail/v1/{TENANT}/{STORE}/{DEVICE}/state", qos=1)
        assert wait_until(lambda: bool(got), 10)
        return got[-1]
    finally:
        client.loop_stop()
        client.disconnect()


def silent_model(path: Path) -> Path:
    """An ONNX graph with the ssd signature that finds nobody in any frame (it loads and runs)."""
    image = helper.make_tensor_value_info("input_tensor", TensorProto.UINT8, [1, None, None, 3])
    nodes = [
        helper.make_node("Cast", ["input_tensor"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["as_float"], ["peak"], keepdims=1),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Reshape", ["nothing", "shape_scores"], ["detection_scores"]),
        helper.make_node("Reshape", ["nothing", "shape_3d"], ["nothing_3d"]),
        helper.make_node("Expand", ["nothing_3d", "shape_boxes"], ["detection_boxes"]),
        helper.make_node("Add", ["detection_scores", "one"], ["detection_classes"]),
        helper.make_node("Reshape", ["nothing", "shape_count"], ["num_detections"]),
    ]
    consts = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("shape_scores", TensorProto.INT64, [2], [1, 1]),
        helper.make_tensor("shape_3d", TensorProto.INT64, [3], [1, 1, 1]),
        helper.make_tensor("shape_boxes", TensorProto.INT64, [3], [1, 1, 4]),
        helper.make_tensor("shape_count", TensorProto.INT64, [1], [1]),
    ]
    outputs = [
        helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [1, 1, 4]),
        helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [1, 1]),
        helper.make_tensor_value_info("detection_classes", TensorProto.FLOAT, [1, 1]),
        helper.make_tensor_value_info("num_detections", TensorProto.FLOAT, [1]),
    ]
    graph = helper.make_graph(nodes, "silent", [image], outputs, initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def default_sha256() -> str:
    manifest = load_manifest()
    return manifest[manifest.default].sha256


def test_a_truncated_or_corrupted_artifact_is_refused_at_verification(
    device: tuple[Device, Path], fleet_broker: Broker, yolox_path: Path
) -> None:
    agent, key = device
    data = yolox_path.read_bytes()
    truncated = publish_artifact(
        yolox_path, tenant=TENANT, host=fleet_broker.host, port=fleet_broker.port, data=data[:-5000]
    )
    statuses = send_model(truncated, key, fleet_broker, "model-truncated", agent.record, YOLOX)
    assert statuses[-1]["state"] == "FAILED" and statuses[-1]["reason"] == "size_mismatch", statuses
    assert [s["step"] for s in statuses if s["state"] == "IN_PROGRESS"][-1] == "verifying"

    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0x55
    manifest = publish_artifact(yolox_path, tenant=TENANT, host=fleet_broker.host, port=fleet_broker.port)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="corrupter")  # one chunk altered on the broker
    client.connect(fleet_broker.host, fleet_broker.port)
    client.loop_start()
    index = (len(data) // 2) // manifest.chunk_size
    chunk = bytes(corrupted[index * manifest.chunk_size : (index + 1) * manifest.chunk_size])
    client.publish(artifact_chunk(TENANT, manifest.sha256, index), chunk, qos=1, retain=True).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    statuses = send_model(manifest, key, fleet_broker, "model-corrupted", agent.record, YOLOX)
    assert statuses[-1]["state"] == "FAILED" and statuses[-1]["reason"] == "sha256_mismatch", statuses

    assert agent.runtime.pipeline.detector.spec.sha256 == default_sha256()
    state = agent.runtime.config.device.state_dir
    assert not (state / "models" / f"{manifest.sha256}.onnx").exists()
    assert list((state / "artifacts").iterdir()) == []


def test_a_model_failing_its_health_check_is_rolled_back_while_counting_goes_on(
    device: tuple[Device, Path], fleet_broker: Broker, tmp_path: Path
) -> None:
    agent, key = device
    model = silent_model(tmp_path / "silent.onnx")
    manifest = publish_artifact(model, tenant=TENANT, host=fleet_broker.host, port=fleet_broker.port)
    before = agent.frames
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic(), agent.frames))
            done.wait(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = send_model(manifest, key, fleet_broker, "model-silent", agent.record, SILENT)
    finally:
        done.set()
        sampler.join()
    assert statuses[-1]["state"] == "ROLLED_BACK", statuses
    assert statuses[-1]["reason"] == "no_detection"
    steps = [s["step"] for s in statuses if s["state"] == "IN_PROGRESS"]
    assert steps[0] == "downloading" and steps[-3:] == ["verifying", "staging", "health_check"]
    # Frames were counted all through the job: never two seconds without a new one.
    assert agent.frames_seen[-1][1] > agent.frames_seen[0][1] > before
    changes = [at for (at, n), (_at, m) in itertools.pairwise(samples) if m > n]
    assert changes and max(b - a for a, b in itertools.pairwise(changes)) < 2.0, samples
    assert agent.runtime.supervisor.runner("counting").health().restarts == 0
    assert wait_until(lambda: agent.runtime.pipeline.detector.spec.sha256 == default_sha256(), 10)
    assert agent.runtime.models.current_sha256() == default_sha256()
    assert read_active(agent.runtime.config.device.state_dir) is None
    assert retained_state(fleet_broker)["model"]["sha256"] == default_sha256()
    frames = agent.frames
    assert wait_until(lambda: agent.frames > frames + 5, 20)  # and goes on after it


def test_a_good_model_succeeds_is_in_use_and_reported_in_the_birth(
    device: tuple[Device, Path], fleet_broker: Broker, yolox_path: Path
) -> None:
    agent, key = device
    manifest = publish_artifact(yolox_path, tenant=TENANT, host=fleet_broker.host, port=fleet_broker.port)
    unnamed = send_model(manifest, key, fleet_broker, "model-unnamed", agent.record)
    assert unnamed[-1]["state"] == "REJECTED"
    assert unnamed[-1]["reason"] == "unlisted_model_needs_family_and_licence"
    statuses = send_model(manifest, key, fleet_broker, "model-good", agent.record, YOLOX)
    assert statuses[-1]["state"] == "SUCCEEDED", statuses
    assert statuses[-1]["details"]["frames"] > 0
    assert [s["version"] for s in statuses] == sorted({s["version"] for s in statuses})
    assert wait_until(lambda: agent.runtime.pipeline.detector.spec.sha256 == manifest.sha256, 10)
    active = read_active(agent.runtime.config.device.state_dir)
    assert active is not None and active.sha256 == manifest.sha256 and active.previous == default_sha256()
    stored = agent.runtime.config.device.state_dir / "models" / f"{manifest.sha256}.onnx"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == manifest.sha256
    assert wait_until(lambda: retained_state(fleet_broker)["model"]["sha256"] == manifest.sha256, 10)
    assert retained_state(fleet_broker)["model"]["name"] == "yolox-nano"


def job_statuses(broker: Broker, job_id: str, into: list[dict[str, Any]]) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{job_id}")
    client.on_message = lambda _c, _u, message: into.append(json.loads(message.payload))
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(f"retail/v1/{TENANT}/+/+/jobs/{job_id}", qos=1)
    return client


def test_an_agent_killed_during_the_download_resumes_after_a_restart(
    tmp_path: Path, fleet_broker: Broker, vtest_path: Path, yolox_path: Path
) -> None:
    key, public = fleet_keys(tmp_path / "keys")
    path = agent_config(tmp_path, fleet_broker, vtest_path, public, check_s=2.0)
    manifest = artifact_manifest(yolox_path, chunk_size=64 * 1024)
    data = yolox_path.read_bytes()
    half = manifest.chunks // 2
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="publisher")
    publisher.connect(fleet_broker.host, fleet_broker.port)
    publisher.loop_start()

    def publish(indexes: range) -> None:
        size = manifest.chunk_size
        infos = [
            publisher.publish(artifact_chunk(TENANT, manifest.sha256, i), data[i * size : (i + 1) * size], 1, True)
            for i in indexes
        ]
        for info in infos:
            info.wait_for_publish(10)

    publish(range(half))  # the rest comes only after the kill
    statuses: list[dict[str, Any]] = []
    watcher = job_statuses(fleet_broker, "model-resumed", statuses)
    log = tmp_path / "agent.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("a") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(path)], stdout=out, stderr=out
            )

    proc = start()
    try:
        assert wait_until(lambda: "published birth" in log.read_text(), 60), log.read_text()[-3000:]
        publish_model_job(
            manifest,
            key_path=key,
            tenant=TENANT,
            target=TARGET,
            host=fleet_broker.host,
            port=fleet_broker.port,
            store=STORE,
            command_id="model-resumed",
            **YOLOX,
        )
        assert wait_until(lambda: any(s.get("details", {}).get("received") == half for s in statuses), 60), statuses
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        publish(range(half, manifest.chunks))
        proc = start()
        assert wait_until(lambda: statuses[-1]["state"] not in ("QUEUED", "IN_PROGRESS"), 120), statuses
        assert statuses[-1]["state"] == "SUCCEEDED", (statuses, log.read_text()[-3000:])
        assert f"resuming with {half} of {manifest.chunks} chunks" in log.read_text()
        versions = [s["version"] for s in statuses]
        # The count went on across the restart. A status sent just before the kill but not yet marked
        # delivered is sent again after it (at least once), so a version may repeat, never go back.
        assert versions == sorted(versions)
        assert sorted(set(versions)) == list(range(versions[0], versions[-1] + 1))
        assert wait_until(lambda: retained_state(fleet_broker)["model"]["sha256"] == manifest.sha256, 10)

        os.kill(proc.pid, signal.SIGKILL)  # a restart keeps the delivered model
        proc.wait(10)
        marker = len(log.read_text())
        proc = start()
        assert wait_until(lambda: "published birth" in log.read_text()[marker:], 60)
        assert "using the delivered model yolox-nano" in log.read_text()[marker:]
        assert retained_state(fleet_broker)["model"]["sha256"] == manifest.sha256
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        watcher.loop_stop()
        publisher.loop_stop()
    assert "Traceback" not in log.read_text()
