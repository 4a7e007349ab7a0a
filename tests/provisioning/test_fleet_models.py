"""`retail-provision fleet publish-model` and `clear-artifact` against a real Mosquitto."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sync_broker import Broker, mosquitto_available

from agent.fleet.commands import canonical_bytes
from provisioning import cli
from provisioning.fleet_models import artifact_manifest, model_command

pytestmark = pytest.mark.integration

SHA_FILTER = "retail/v1/acme/_artifacts/{sha}/+"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed on this machine")
    running = Broker(tmp_path / "broker", anonymous=True)
    running.start()
    try:
        yield running
    finally:
        running.kill()


def retained(broker: Broker, topic_filter: str, wait_s: float = 1.5) -> dict[str, bytes]:
    """What a fresh subscriber to ``topic_filter`` receives as retained messages."""
    got: dict[str, bytes] = {}
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"reader-{time.monotonic_ns()}")

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        if message.retain:
            got[message.topic] = bytes(message.payload)

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(topic_filter, qos=1)
    time.sleep(wait_s)
    client.loop_stop()
    client.disconnect()
    return got


def test_publish_model_retains_every_chunk_and_sends_a_signed_job_then_clear_removes_them(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    assert cli.main(["fleet", "keygen", "--out", str(keys)]) == 0
    model = tmp_path / "model.onnx"
    data = os.urandom(5000)
    model.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    args = ["fleet", "publish-model", "--model", str(model), "--key", str(keys / "fleet.key"), "--tenant", "acme"]
    args += ["--target", "group:north", "--broker", f"{broker.host}:{broker.port}", "--chunk-size", "2048"]
    args += ["--family", "ssd", "--licence", "MIT", "--id", "model-7"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert sha in out and "3 chunks" in out and "job model-7" in out
    chunks = retained(broker, SHA_FILTER.format(sha=sha))
    assert b"".join(chunks[f"retail/v1/acme/_artifacts/{sha}/{i}"] for i in range(3)) == data
    assert retained(broker, "retail/v1/acme/_fleet/north/cmd/#", wait_s=0.3) == {}  # the job is not retained

    assert (
        cli.main(["fleet", "clear-artifact", sha, "--tenant", "acme", "--broker", f"{broker.host}:{broker.port}"]) == 0
    )
    assert "3 retained chunks" in capsys.readouterr().out
    assert retained(broker, SHA_FILTER.format(sha=sha)) == {}


def test_the_model_job_body_is_the_signed_manifest(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x" * 3000)
    manifest = artifact_manifest(model, 1024)
    command = model_command(manifest, tenant="acme", target="store:s1", family="yolox", licence="Apache-2.0")
    assert command.type == "model"
    assert command.body == {
        "sha256": hashlib.sha256(b"x" * 3000).hexdigest(),
        "size": 3000,
        "chunks": 3,
        "chunk_size": 1024,
        "family": "yolox",
        "licence": "Apache-2.0",
    }
    assert json.loads(canonical_bytes(command.document()))["body"]["chunks"] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--chunk-size", "10"], "--chunk-size must be from 1024"),
        (["--broker", "nowhere"], "--broker must be HOST:PORT"),
        (["--model", "/no/such/model.onnx"], "--model /no/such/model.onnx"),
    ],
)
def test_bad_operator_input_is_refused_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x" * 3000)
    args = {"--model": str(model), "--key": str(tmp_path / "k"), "--tenant": "acme", "--target": "group:g"}
    args |= {"--broker": "127.0.0.1:1"}
    args |= dict(zip(extra[::2], extra[1::2], strict=True))
    argv = ["fleet", "publish-model", *[part for pair in args.items() for part in pair]]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
