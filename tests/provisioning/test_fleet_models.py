"""`retail-provision fleet publish-model` and `clear-artifact` against a real Mosquitto."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sync_broker import Broker

from agent.fleet.commands import canonical_bytes
from provisioning import cli
from provisioning.fleet_models import artifact_manifest, clear_artifact, model_command, publish_artifact

pytestmark = pytest.mark.integration

SHA_FILTER = "retail/v1/acme/_artifacts/{sha}/+"


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


class SlowLink:
    """A TCP relay to the broker that holds back the broker's first reply (the CONNACK) for ``delay_s``."""

    def __init__(self, broker: Broker, delay_s: float) -> None:
        self.broker = broker
        self.delay_s = delay_s
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        try:
            client, _ = self.server.accept()
        except OSError:
            return
        upstream = socket.create_connection((self.broker.host, self.broker.port))
        for source, sink, delay in ((client, upstream, 0.0), (upstream, client, self.delay_s)):
            thread = threading.Thread(target=self._pump, args=(source, sink, delay), daemon=True)
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, delay_s: float) -> None:
        first = True
        try:
            while data := source.recv(65536):
                if first and delay_s:
                    time.sleep(delay_s)
                first = False
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
        for thread in self._threads:
            thread.join(timeout=5)


def test_clear_artifact_over_a_slow_connection_still_clears_every_chunk(broker: Broker, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    data = os.urandom(5000)
    model.write_bytes(data)
    manifest = publish_artifact(model, tenant="acme", host=broker.host, port=broker.port, chunk_size=2048)
    assert len(retained(broker, SHA_FILTER.format(sha=manifest.sha256))) == 3
    link = SlowLink(broker, delay_s=1.5)  # longer than the quiet period
    try:
        cleared = clear_artifact(manifest.sha256, tenant="acme", host="127.0.0.1", port=link.port)
    finally:
        link.close()
    assert cleared == 3
    assert retained(broker, SHA_FILTER.format(sha=manifest.sha256)) == {}
