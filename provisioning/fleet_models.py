"""Operator side of model delivery: retained chunks on the broker, then a signed ``model`` job.

``publish_artifact`` cuts a file into chunks of ``chunk_size`` bytes and publishes chunk ``i`` retained
(QoS 1) on ``retail/v1/{tenant}/_artifacts/{sha256}/{i}``, so a device that connects later still
gets every chunk. ``model_command`` builds the job whose body is the artifact's manifest (sha256,
size, chunk count and size, and for a model outside the devices' manifest its family and licence);
``publish_model_job`` signs and sends it to a target and, when asked, follows its status.
``clear_artifact`` removes the retained chunks once a rollout is over (an empty retained message
clears a topic). A rollout publishes the artifact once and calls ``publish_model_job`` per wave.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from agent.contract.topics import InvalidTopicSegment, artifact_chunk, artifact_prefix, chunk_index
from agent.fleet.bodies import MAX_CHUNK_BYTES, MAX_MODEL_BYTES, MIN_CHUNK_BYTES
from agent.fleet.commands import Command
from provisioning.fleet import (
    CONNECT_TIMEOUT_S,
    FleetToolError,
    build_command,
    command_topic,
    connected_client,
    send_command,
    sign,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 256 * 1024
QUIET_S = 1.0
"""``clear_artifact`` stops listening for retained chunks after this long without a new one."""
MIN_LISTEN_S = 2.0
"""``clear_artifact`` listens at least this long after the broker confirmed its subscription."""


@dataclass(frozen=True)
class ArtifactManifest:
    """What a device needs to assemble and verify an artifact."""

    sha256: str
    size: int
    chunks: int
    chunk_size: int

    def body(self, *, family: str | None = None, licence: str | None = None, name: str | None = None) -> dict[str, Any]:
        """The ``model`` command body for this artifact."""
        body: dict[str, Any] = {
            "sha256": self.sha256,
            "size": self.size,
            "chunks": self.chunks,
            "chunk_size": self.chunk_size,
        }
        for key, value in (("family", family), ("licence", licence), ("name", name)):
            if value is not None:
                body[key] = value
        return body


def artifact_manifest(path: Path, chunk_size: int = DEFAULT_CHUNK_BYTES) -> ArtifactManifest:
    """The manifest of ``path`` cut in chunks of ``chunk_size``; FleetToolError naming the bad input."""
    if not MIN_CHUNK_BYTES <= chunk_size <= MAX_CHUNK_BYTES:
        raise FleetToolError(f"--chunk-size must be from {MIN_CHUNK_BYTES} to {MAX_CHUNK_BYTES} bytes")
    try:
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise FleetToolError(f"--model {path}: {exc.strerror or exc}") from None
    if not 0 < size <= MAX_MODEL_BYTES:
        raise FleetToolError(f"--model {path}: {size} bytes; a model has 1 to {MAX_MODEL_BYTES} bytes")
    return ArtifactManifest(digest.hexdigest(), size, math.ceil(size / chunk_size), chunk_size)


def publish_artifact(
    path: Path,
    *,
    tenant: str,
    host: str,
    port: int,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    timeout_s: float = 300.0,
    data: bytes | None = None,
) -> ArtifactManifest:
    """Publish ``path`` as retained chunks and return its manifest once the broker has every chunk.

    ``data`` replaces the file's bytes on the wire (only to test that devices refuse a bad artifact).
    """
    manifest = artifact_manifest(path, chunk_size)
    try:
        artifact_prefix(tenant, manifest.sha256)
    except InvalidTopicSegment as exc:
        raise FleetToolError(f"--tenant: {exc}") from None
    deadline = time.monotonic() + timeout_s
    with connected_client(host, port) as client:
        pending = []
        with path.open("rb") as handle:
            for index in range(manifest.chunks):
                chunk = handle.read(chunk_size) if data is None else data[index * chunk_size : (index + 1) * chunk_size]
                info = client.publish(artifact_chunk(tenant, manifest.sha256, index), chunk, qos=1, retain=True)
                pending.append(info)
        for info in pending:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise FleetToolError(f"the broker did not take every chunk within {timeout_s:.0f} s")
    logger.info("artifact %s: %d chunks of %d bytes retained", manifest.sha256, manifest.chunks, chunk_size)
    return manifest


def model_command(
    manifest: ArtifactManifest,
    *,
    tenant: str,
    target: str,
    family: str | None = None,
    licence: str | None = None,
    name: str | None = None,
    command_id: str | None = None,
    ttl_s: int = 3600,
) -> Command:
    """The ``model`` job for ``target`` (unsigned); FleetToolError naming bad input."""
    body = json.dumps(manifest.body(family=family, licence=licence, name=name))
    return build_command(
        tenant=tenant, target=target, command_type="model", body=body, command_id=command_id, ttl_s=ttl_s
    )


def publish_model_job(
    manifest: ArtifactManifest,
    *,
    key_path: Path,
    tenant: str,
    target: str,
    host: str,
    port: int,
    store: str | None = None,
    group: str | None = None,
    family: str | None = None,
    licence: str | None = None,
    name: str | None = None,
    command_id: str | None = None,
    ttl_s: int = 3600,
    wait: bool = False,
    timeout_s: float = 300.0,
    on_status: Callable[[dict[str, Any]], None] = lambda status: None,
) -> tuple[Command, list[dict[str, Any]]]:
    """Sign and publish the model job for an artifact already published; its statuses when ``wait``."""
    command = model_command(
        manifest,
        tenant=tenant,
        target=target,
        family=family,
        licence=licence,
        name=name,
        command_id=command_id,
        ttl_s=ttl_s,
    )
    topic = command_topic(command, store=store, group=group)
    statuses = send_command(
        sign(command, key_path),
        topic,
        host=host,
        port=port,
        wait_job=(tenant, command.id) if wait else None,
        timeout_s=timeout_s,
        on_status=on_status,
    )
    return command, statuses


def clear_artifact(sha256: str, *, tenant: str, host: str, port: int, timeout_s: float = 30.0) -> int:
    """Clear every retained chunk of ``sha256`` (empty retained messages); the number cleared."""
    try:
        prefix = artifact_prefix(tenant, sha256)
    except InvalidTopicSegment as exc:
        raise FleetToolError(str(exc)) from None
    found: set[int] = set()
    subscribed = threading.Event()
    last_seen = [0.0]
    lock = threading.Lock()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        index = chunk_index(message.topic)
        if index is not None and message.retain and message.payload:
            with lock:
                found.add(index)
                last_seen[0] = time.monotonic()

    def on_subscribe(_c: paho.Client, _u: object, _mid: int, reasons: list[Any], _p: object) -> None:
        if reasons and not any(reason.is_failure for reason in reasons):
            subscribed.set()

    with connected_client(host, port) as client:
        client.on_message = on_message
        client.on_subscribe = on_subscribe
        deadline = time.monotonic() + timeout_s
        client.subscribe(f"{prefix}/+", qos=1)
        # The broker sends the retained chunks after its SUBACK: only from then on does silence mean "no more".
        if not subscribed.wait(max(0.0, min(CONNECT_TIMEOUT_S, deadline - time.monotonic()))):
            raise FleetToolError(f"the broker at {host}:{port} did not confirm the subscription to {prefix}/+")
        listening_since = time.monotonic()
        with lock:
            last_seen[0] = max(last_seen[0], listening_since)
        while time.monotonic() < deadline:
            now = time.monotonic()
            with lock:
                quiet = now - last_seen[0] >= QUIET_S and now - listening_since >= MIN_LISTEN_S
            if quiet:
                break
            time.sleep(0.1)
        client.unsubscribe(f"{prefix}/+")
        with lock:
            indexes = sorted(found)
        infos = [client.publish(artifact_chunk(tenant, sha256, i), b"", qos=1, retain=True) for i in indexes]
        for info in infos:
            info.wait_for_publish(CONNECT_TIMEOUT_S)
    logger.info("artifact %s: %d retained chunks cleared", sha256, len(indexes))
    return len(indexes)
