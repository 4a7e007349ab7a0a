"""Shared by the fleet tests: a fleet key, a device config, signed commands."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.fleet.commands import Command, Target, sign_command

NOW = time.time()
FLEET_KEY = Ed25519PrivateKey.generate()


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def device_toml(state_dir: Path, *, extra: str = "", mqtt: dict[str, Any] | None = None, groups: str = "[]") -> str:
    text = (
        f'[device]\nid = "till-1"\ntenant = "acme"\nstore = "store-042"\nstate_dir = "{state_dir}"\n\n'
        f'[fleet]\npublic_key = "{public_b64(FLEET_KEY)}"\ngroups = {groups}\n'
    )
    if mqtt is not None:
        text += "\n[mqtt]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in mqtt.items())
    return text + extra


def command(
    command_type: str,
    body: dict[str, Any] | None = None,
    *,
    command_id: str = "cmd-1",
    target: str = "device:till-1",
    tenant: str = "acme",
    issued_at: float = NOW - 10,
    ttl: int = 3600,
) -> Command:
    issued = int(issued_at)
    return Command(command_id, command_type, tenant, Target.parse(target), issued, issued + ttl, body or {})


def signed(cmd: Command, key: Ed25519PrivateKey = FLEET_KEY) -> bytes:
    return sign_command(cmd, key)
