"""Operator side of fleet commands: a fleet key pair, and signing and publishing one command.

``keygen`` writes ``fleet.key`` (PKCS8 PEM, mode 0600, keep it offline) and ``fleet.toml`` (the
``[fleet]`` section for device configs). ``send`` builds a command (see agent.fleet.commands for
the format and the canonical encoding it signs), publishes it with QoS 1 and, when asked, waits
for the job's status on ``retail/v1/{tenant}/+/+/jobs/{id}``.

Where a command goes: ``device:D`` to ``retail/v1/{tenant}/{store}/{D}/cmd/{type}`` (``--store``
is needed); ``group:G`` to ``retail/v1/{tenant}/_fleet/{G}/cmd/{type}``; ``store:S`` to the group
given with ``--group`` (devices of other stores in that group refuse it as mis-targeted).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from paho.mqtt.enums import CallbackAPIVersion

from agent.contract.topics import ROOT, VERSION, Topics, check_segment, fleet_prefix
from agent.fleet.commands import MAX_LIFETIME_S, Command, Target, sign_command
from provisioning.coupons import load_private_key, public_key_base64

logger = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "ROLLED_BACK"})
CONNECT_TIMEOUT_S = 10.0


class FleetToolError(ValueError):
    """Bad operator input, or the broker could not be reached; the message says which."""


@dataclass(frozen=True)
class FleetKeyFiles:
    private_key: Path
    config_snippet: Path
    public_key: str


def generate_fleet_key(out_dir: Path) -> FleetKeyFiles:
    """Write a new fleet key pair into ``out_dir``; refuses (FileExistsError) to overwrite one."""
    private_path, snippet_path = out_dir / "fleet.key", out_dir / "fleet.toml"
    for path in (private_path, snippet_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a fleet key")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    _write_new(private_path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()), 0o600)
    public = public_key_base64(key)
    _write_new(snippet_path, f'[fleet]\npublic_key = "{public}"\ngroups = []\n'.encode(), 0o644)
    return FleetKeyFiles(private_path, snippet_path, public)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def build_command(
    *,
    tenant: str,
    target: str,
    command_type: str,
    body: str,
    command_id: str | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
) -> Command:
    """A command from operator input; FleetToolError naming what is wrong."""
    try:
        parsed_body = json.loads(body)
    except ValueError as exc:
        raise FleetToolError(f"--body is not JSON: {exc}") from None
    if not isinstance(parsed_body, dict):
        raise FleetToolError("--body must be a JSON object")
    if not 0 < ttl_s <= MAX_LIFETIME_S:
        raise FleetToolError(f"--ttl must be from 1 to {MAX_LIFETIME_S} seconds")
    try:
        parsed_target = Target.parse(target)
        check_segment(tenant, "--tenant")
        check_segment(command_type, "--type")
        checked_id = check_segment(command_id or f"{command_type}-{uuid.uuid4().hex[:12]}", "--id")
    except ValueError as exc:
        raise FleetToolError(str(exc)) from None
    issued = int(time.time() if now is None else now)
    return Command(checked_id, command_type, tenant, parsed_target, issued, issued + ttl_s, parsed_body)


def command_topic(command: Command, *, store: str | None = None, group: str | None = None) -> str:
    """Where ``command`` is published (see the module docstring)."""
    target = command.target
    try:
        if target.kind == "device":
            if store is None:
                raise FleetToolError("a device target needs --store (the device's store id)")
            return Topics(command.tenant, store, target.name).command(command.type)
        chosen = target.name if target.kind == "group" else group
        if chosen is None:
            raise FleetToolError("a store target is sent to a fleet group: give --group")
        return f"{fleet_prefix(command.tenant, chosen)}/cmd/{check_segment(command.type, 'type')}"
    except ValueError as exc:
        raise FleetToolError(str(exc)) from None


def jobs_filter(tenant: str, job_id: str) -> str:
    """The subscription for one job's status from any device of the tenant."""
    return f"{ROOT}/{VERSION}/{tenant}/+/+/jobs/{job_id}"


@contextmanager
def connected_client(host: str, port: int) -> Iterator[paho.Client]:
    """A paho client connected to the broker at ``host:port`` with its network loop running;
    FleetToolError when the broker cannot be reached or does not accept the connection."""
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"retail-provision-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(64)

    def on_connect(_c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            connected.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise FleetToolError(f"cannot reach the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(CONNECT_TIMEOUT_S):
            raise FleetToolError(f"the broker at {host}:{port} did not accept the connection")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def send_command(
    payload: bytes,
    topic: str,
    *,
    host: str,
    port: int,
    wait_job: tuple[str, str] | None = None,
    timeout_s: float = 30.0,
    on_status: Callable[[dict[str, Any]], None] = lambda status: None,
) -> list[dict[str, Any]]:
    """Publish ``payload`` (QoS 1); with ``wait_job=(tenant, job_id)`` collect its statuses until final.

    Returns the statuses received (each decoded JSON). FleetToolError when the broker cannot be reached.
    """
    statuses: queue.Queue[dict[str, Any]] = queue.Queue()
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        try:
            status = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(status, dict):
            statuses.put(status)

    with connected_client(host, port) as client:
        client.on_subscribe = lambda *_args: subscribed.set()
        client.on_message = on_message
        if wait_job is not None:
            client.subscribe(jobs_filter(*wait_job), qos=1)
            subscribed.wait(CONNECT_TIMEOUT_S)
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(CONNECT_TIMEOUT_S)
        logger.info("published %d bytes to %s", len(payload), topic)
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while wait_job is not None and time.monotonic() < deadline:
            try:
                status = statuses.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            received.append(status)
            on_status(status)
            if status.get("state") in TERMINAL_STATES:
                break
        return received


def sign(command: Command, key_path: Path) -> bytes:
    """The signed wire form of ``command``, with the private key in ``key_path``."""
    return sign_command(command, load_private_key(key_path))
