"""The body of each command type, validated before a job runs; unknown fields are refused."""

from __future__ import annotations

import base64
import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.config import ed25519_public_key

logger = logging.getLogger(__name__)

Serial = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$")]
Campaign = Annotated[int, Field(ge=0, le=0xFFFF_FFFF)]
KeyId = Annotated[int, Field(ge=0, le=255)]
MAX_CONFIG_CHARS = 128 * 1024
MAX_MODEL_BYTES = 512 * 1024 * 1024
MIN_CHUNK_BYTES = 1024
MAX_CHUNK_BYTES = 1024 * 1024
"""A chunk is the most a device holds in memory while it assembles an artifact."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RevokeBody(_Body):
    """Withdraw coupons by serial and whole campaigns."""

    serials: list[Serial] = Field(default_factory=list, max_length=10_000)
    campaigns: list[Campaign] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _something(self) -> RevokeBody:
        if not self.serials and not self.campaigns:
            raise ValueError("name at least one serial or campaign")
        return self


class IssuerKeyBody(_Body):
    """Add (with ``public_key``, standard base64 of 32 bytes) or retire a coupon issuer key."""

    action: Literal["add", "retire"]
    key_id: KeyId
    public_key: str | None = None

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else ed25519_public_key(value)

    @model_validator(mode="after")
    def _key_with_add(self) -> IssuerKeyBody:
        if (self.action == "add") != (self.public_key is not None):
            raise ValueError("public_key goes with action 'add' and only with it")
        return self

    def raw_key(self) -> bytes:
        return base64.b64decode(self.public_key or "")


class EraseBody(_Body):
    """Erase one coupon's records (it stays refused)."""

    serial: Serial


class PingBody(_Body):
    """Nothing: the answer is the job status."""


class CancelBody(_Body):
    """Cancel the job ``job_id`` unless it has finished (a job not seen yet is canceled before it arrives)."""

    job_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class FleetKeyBody(_Body):
    """The new fleet public key (standard base64 of 32 raw bytes)."""

    public_key: str

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return ed25519_public_key(value)

    def raw_key(self) -> bytes:
        return base64.b64decode(self.public_key)


class ConfigBody(_Body):
    """A desired config with the operator's version: TOML text (``toml``) or a JSON object (``config``)."""

    version: Annotated[int, Field(ge=0, lt=2**53)]
    toml: Annotated[str, Field(max_length=MAX_CONFIG_CHARS)] | None = None
    config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_document(self) -> ConfigBody:
        if (self.toml is None) == (self.config is None):
            raise ValueError("give exactly one of toml (text) or config (an object)")
        return self


class ModelBody(_Body):
    """A detector model delivered as retained chunks: the manifest the device verifies it against.

    ``family`` and ``licence`` are required for a model whose sha256 is not in the device's model
    manifest (the device checks that when the job runs); ``name`` is what birth and status call it.
    """

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=1, le=MAX_MODEL_BYTES)]
    chunks: Annotated[int, Field(ge=1)]
    chunk_size: Annotated[int, Field(ge=MIN_CHUNK_BYTES, le=MAX_CHUNK_BYTES)]
    family: Literal["ssd", "yolox"] | None = None
    licence: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._+()-]*$")] | None = (
        None
    )
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] | None = None

    @model_validator(mode="after")
    def _chunk_count(self) -> ModelBody:
        expected = -(-self.size // self.chunk_size)
        if self.chunks != expected:
            raise ValueError(f"chunks must be {expected} for size {self.size} in chunks of {self.chunk_size}")
        return self

    def chunk_length(self, index: int) -> int:
        """The length chunk ``index`` has in the artifact the manifest describes."""
        return min(self.chunk_size, self.size - index * self.chunk_size)


BODIES: dict[str, type[_Body]] = {
    "revoke": RevokeBody,
    "issuer_keys": IssuerKeyBody,
    "erase": EraseBody,
    "ping": PingBody,
    "fleet_key": FleetKeyBody,
    "config": ConfigBody,
    "cancel": CancelBody,
    "model": ModelBody,
}
"""The body model of each command type the device runs."""


def parse_body(command_type: str, body: dict[str, Any]) -> _Body:
    """The validated body; KeyError for an unknown type, ValueError naming the fields otherwise."""
    model = BODIES[command_type]
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        raise ValueError(problems[:300]) from None
