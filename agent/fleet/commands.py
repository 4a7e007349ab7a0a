"""Signed fleet commands: their format, canonical encoding, signature and checks.

A command is one JSON object (UTF-8, at most MAX_COMMAND_BYTES) published on the device's
``cmd/#`` topic or a fleet group's ``retail/v1/{tenant}/_fleet/{group}/cmd/#``::

    {"schema": "fleet_command.v1", "id": "rollout-42-till-1", "type": "revoke",
     "tenant": "acme", "target": "device:till-1", "issued_at": 1767225600,
     "expires_at": 1767229200, "body": {...}, "signature": "<base64>"}

- ``id``: 1-64 letters, digits, '_', '.', '-' (it becomes the job id and a topic level);
- ``target``: ``device:ID``, ``store:STORE`` or ``group:GROUP``; ``tenant`` must be the device's;
- ``issued_at`` / ``expires_at``: whole unix seconds; at most MAX_LIFETIME_S apart;
- ``signature``: standard base64 of the Ed25519 signature (fleet key) over the canonical encoding.

Canonical encoding (what is signed): the command object without its ``signature`` field, as JSON
with keys sorted at every level, no whitespace (separators ``,`` and ``:``), non-ASCII characters
written as themselves (not ``\\u`` escapes), encoded as UTF-8; NaN and infinities are refused.
Python's ``json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` produces
it; signers in other languages should keep numbers in the body to integers.

A device refuses, naming the reason (``Reason``): oversized, malformed (not JSON, duplicate keys,
missing or wrong fields), unsigned, bad signature, wrong tenant or target, not yet valid, expired,
and replayed (checked against the ids it has seen, see ``agent.fleet.replay``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

logger = logging.getLogger(__name__)

SCHEMA = "fleet_command.v1"
SIGNATURE_FIELD = "signature"
MAX_COMMAND_BYTES = 256 * 1024
MAX_LIFETIME_S = 30 * 86_400
CLOCK_SKEW_S = 300
"""A command issued up to this many seconds in the device's future is still accepted."""
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
FIELDS = frozenset({"schema", "id", "type", "tenant", "target", "issued_at", "expires_at", "body", SIGNATURE_FIELD})

TargetKind = Literal["device", "store", "group"]


class Reason(StrEnum):
    """Why a command was refused (audited and logged with these words)."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    WRONG_TENANT = "wrong_tenant"
    WRONG_TARGET = "wrong_target"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    UNKNOWN_TYPE = "unknown_type"
    BAD_BODY = "bad_body"


class CommandRejected(ValueError):
    """A command the device will not run; ``reason`` says why, ``command`` is set once it was decoded."""

    def __init__(self, reason: Reason, message: str, command: Command | None = None) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.command = command


@dataclass(frozen=True)
class Target:
    """Whom a command is for: one device, every device of a store, or a fleet group."""

    kind: TargetKind
    name: str

    def __post_init__(self) -> None:
        if self.kind not in ("device", "store", "group"):
            raise ValueError(f"target kind {str(self.kind)[:20]!r} must be device, store or group")
        if not isinstance(self.name, str) or not ID_PATTERN.match(self.name):
            raise ValueError(f"target name {str(self.name)[:70]!r} must be 1-64 letters, digits, '_', '.' or '-'")

    @classmethod
    def parse(cls, text: str) -> Target:
        """``device:ID``, ``store:STORE`` or ``group:GROUP``."""
        kind, sep, name = str(text).partition(":")
        if not sep or kind not in ("device", "store", "group"):
            raise ValueError(f"target {str(text)[:80]!r} must be device:ID, store:STORE or group:GROUP")
        return cls(kind, name)  # type: ignore[arg-type]

    def matches(self, device: str, store: str, groups: frozenset[str] | set[str] | tuple[str, ...]) -> bool:
        if self.kind == "device":
            return self.name == device
        if self.kind == "store":
            return self.name == store
        return self.name in groups

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Command:
    """A decoded command (its signature not yet checked when it comes from ``decode``)."""

    id: str
    type: str
    tenant: str
    target: Target
    issued_at: int
    expires_at: int
    body: dict[str, Any]

    def document(self) -> dict[str, Any]:
        """The command as signed: every field but the signature."""
        return {
            "schema": SCHEMA,
            "id": self.id,
            "type": self.type,
            "tenant": self.tenant,
            "target": str(self.target),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "body": self.body,
        }


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: ``document`` without ``signature``, canonical JSON, UTF-8."""
    unsigned = {key: value for key, value in document.items() if key != SIGNATURE_FIELD}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def sign_command(command: Command, private_key: Ed25519PrivateKey) -> bytes:
    """The wire form of ``command``, signed with ``private_key``."""
    document = command.document()
    signature = private_key.sign(canonical_bytes(document))
    document[SIGNATURE_FIELD] = base64.b64encode(signature).decode("ascii")
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _whole(document: Mapping[str, Any], key: str) -> int:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
        raise CommandRejected(Reason.MALFORMED, f"{key} must be whole unix seconds")
    return value


def decode(payload: bytes) -> tuple[Command, bytes, dict[str, Any]]:
    """Decode a received command: (command, signature, document). Checks form only, not trust.

    Raises CommandRejected (oversized, malformed, unsigned).
    """
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRejected(Reason.OVERSIZED, f"{len(payload)} bytes, more than {MAX_COMMAND_BYTES}")
    try:
        document = json.loads(
            payload.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandRejected(Reason.MALFORMED, f"not a JSON object: {str(exc)[:100]}") from None
    if not isinstance(document, dict):
        raise CommandRejected(Reason.MALFORMED, "not a JSON object")
    unknown = set(document) - FIELDS
    if unknown:
        raise CommandRejected(Reason.MALFORMED, f"unknown field(s) {', '.join(sorted(k[:40] for k in unknown))}")
    if document.get("schema") != SCHEMA:
        raise CommandRejected(Reason.MALFORMED, f"schema must be {SCHEMA!r}")
    command = from_document(document)
    text = document.get(SIGNATURE_FIELD)
    if text is None:
        raise CommandRejected(Reason.UNSIGNED, "no signature", command)
    try:
        signature = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64:
        raise CommandRejected(Reason.BAD_SIGNATURE, "the signature is not 64 bytes of standard base64", command)
    return command, signature, document


def from_document(document: dict[str, Any]) -> Command:
    """The command a decoded document describes; CommandRejected(malformed) naming the bad field."""
    command_id, command_type, tenant = document.get("id"), document.get("type"), document.get("tenant")
    if not isinstance(command_id, str) or not ID_PATTERN.match(command_id):
        raise CommandRejected(Reason.MALFORMED, "id must be 1-64 letters, digits, '_', '.' or '-'")
    if not isinstance(command_type, str) or not TYPE_PATTERN.match(command_type):
        raise CommandRejected(Reason.MALFORMED, "type must be a lower-case word")
    if not isinstance(tenant, str) or not ID_PATTERN.match(tenant):
        raise CommandRejected(Reason.MALFORMED, "tenant must be 1-64 letters, digits, '_', '.' or '-'")
    try:
        target = Target.parse(document.get("target", ""))
    except ValueError as exc:
        raise CommandRejected(Reason.MALFORMED, str(exc)) from None
    issued_at, expires_at = _whole(document, "issued_at"), _whole(document, "expires_at")
    if not 0 < expires_at - issued_at <= MAX_LIFETIME_S:
        raise CommandRejected(Reason.MALFORMED, f"expires_at must be after issued_at, by at most {MAX_LIFETIME_S} s")
    body = document.get("body")
    if not isinstance(body, dict):
        raise CommandRejected(Reason.MALFORMED, "body must be a JSON object")
    return Command(command_id, command_type, tenant, target, issued_at, expires_at, body)


def verify_signature(document: Mapping[str, Any], signature: bytes, public_key: bytes, command: Command) -> None:
    """Raise CommandRejected(bad_signature) unless ``signature`` is the fleet key's over ``document``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, canonical_bytes(document))
    except (InvalidSignature, ValueError):
        raise CommandRejected(Reason.BAD_SIGNATURE, "not signed by the fleet key", command) from None


def check_addressed(command: Command, tenant: str, device: str, store: str, groups: frozenset[str]) -> None:
    """Raise CommandRejected unless the command is for this tenant and targets this device."""
    if command.tenant != tenant:
        raise CommandRejected(Reason.WRONG_TENANT, f"for tenant {command.tenant!r}", command)
    if not command.target.matches(device, store, groups):
        raise CommandRejected(Reason.WRONG_TARGET, f"for {command.target}, not this device", command)


def check_time(command: Command, now: float) -> None:
    """Raise CommandRejected unless ``now`` is inside the command's validity (with CLOCK_SKEW_S)."""
    if now + CLOCK_SKEW_S < command.issued_at:
        raise CommandRejected(Reason.NOT_YET_VALID, f"issued {command.issued_at - now:.0f} s in the future", command)
    if now >= command.expires_at:
        raise CommandRejected(Reason.EXPIRED, f"expired {now - command.expires_at:.0f} s ago", command)
