"""What a rollout sends: a job kind gives a command type and body; a publisher sends it to one device.

The rollout itself knows nothing of the job's content: it calls a ``Publish`` function once per
device with the job id the plan gave that device. ``command_publisher`` is the one for signed
commands to a device's ``cmd/{type}`` topic; a job that needs a preparation first (artifact chunks
for a model) does it before building the publisher, and its kind is one more ``JobSpec`` maker here.
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contract.topics import Topics
from agent.fleet.bodies import MAX_CONFIG_CHARS, parse_body
from agent.fleet.commands import MAX_LIFETIME_S, Command, Target, sign_command
from provisioning.fleet import FleetToolError
from provisioning.fleet_models import DEFAULT_CHUNK_BYTES, publish_artifact
from provisioning.rollout.link import BrokerLink
from provisioning.rollout.targets import DeviceRef

logger = logging.getLogger(__name__)

Publish = Callable[[DeviceRef, str], str]
"""Publishes the rollout's job for one device under the given job id; returns the job id."""


@dataclass(frozen=True)
class JobSpec:
    """A job as a command type and the body every device receives."""

    type: str
    body: dict[str, Any]

    def __post_init__(self) -> None:
        try:
            parse_body(self.type, self.body)
        except KeyError:
            raise FleetToolError(f"a rollout cannot send jobs of type {self.type!r}") from None
        except ValueError as exc:
            raise FleetToolError(f"the {self.type} job is not valid: {exc}") from None


def config_job(path: Path, version: int) -> JobSpec:
    """A desired config job from a TOML file; FleetToolError naming ``--config`` or ``--version``.

    The document may leave out ``[device]`` and ``[fleet]``: each device keeps its own.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetToolError(f"--config {path}: cannot read it: {exc}") from None
    if len(text) > MAX_CONFIG_CHARS:
        raise FleetToolError(f"--config {path}: {len(text)} characters, more than {MAX_CONFIG_CHARS}")
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetToolError(f"--config {path}: not valid TOML: {exc}") from None
    if not 0 <= version < 2**53:
        raise FleetToolError("--version must be a whole number from 0")
    return JobSpec("config", {"version": version, "toml": text})


def model_job(
    path: Path,
    *,
    tenant: str,
    host: str,
    port: int,
    family: str | None = None,
    licence: str | None = None,
    name: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
) -> JobSpec:
    """A model job: publishes the model's retained chunks once (every wave's devices fetch them), then the body.

    FleetToolError naming ``--model`` or the broker when that fails.
    """
    manifest = publish_artifact(path, tenant=tenant, host=host, port=port, chunk_size=chunk_size)
    return JobSpec("model", manifest.body(family=family, licence=licence, name=name))


def command_publisher(
    link: BrokerLink,
    key: Ed25519PrivateKey,
    tenant: str,
    spec: JobSpec,
    ttl_s: int,
    *,
    clock: Callable[[], float] = time.time,
) -> Publish:
    """A ``Publish`` that signs ``spec`` for one device (target ``device:ID``) and sends it to its ``cmd/{type}``."""
    if not 0 < ttl_s <= MAX_LIFETIME_S:
        raise FleetToolError(f"--ttl must be from 1 to {MAX_LIFETIME_S} seconds")

    def publish(device: DeviceRef, job_id: str) -> str:
        issued = int(clock())
        command = Command(job_id, spec.type, tenant, Target("device", device.device), issued, issued + ttl_s, spec.body)
        link.publish(Topics(tenant, device.store, device.device).command(spec.type), sign_command(command, key))
        return job_id

    return publish


def cancel_publisher(link: BrokerLink, key: Ed25519PrivateKey, tenant: str, ttl_s: int) -> Publish:
    """A ``Publish`` that sends a signed ``cancel`` of the given job id to one device; returns the cancel's id."""
    if not 0 < ttl_s <= MAX_LIFETIME_S:
        raise FleetToolError(f"--ttl must be from 1 to {MAX_LIFETIME_S} seconds")

    def publish(device: DeviceRef, job_id: str) -> str:
        issued = int(time.time())
        cancel_id = f"{job_id}-c{issued}"
        command = Command(
            cancel_id, "cancel", tenant, Target("device", device.device), issued, issued + ttl_s, {"job_id": job_id}
        )
        link.publish(Topics(tenant, device.store, device.device).command("cancel"), sign_command(command, key))
        return cancel_id

    return publish
