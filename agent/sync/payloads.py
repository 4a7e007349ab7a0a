"""JSON payload schemas of the v1 MQTT contract; every message is validated before it is queued.

Every payload carries the common fields of design §5:

- ``schema``: the payload's name and version, e.g. ``"ledger.v1"``;
- ``msg_id``: 32 lowercase hex digits (a uuid4), unique, for de-duplication downstream;
- ``device``: the device id (the same as the topic's device level);
- ``sent_at``: when the device wrote the message, as unix seconds (UTC, a float). A message
  queued while offline keeps the time it was written, not the time the broker received it.

Fields are numbers or fixed patterns only: no free text can carry personal data off the device.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

logger = logging.getLogger(__name__)

WINDOW_S = 900
"""Settlement records carry the start of the 15-minute window of a redemption, never its exact time."""

HEX32_PATTERN = r"^[0-9a-f]{32}$"
DEVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Device ids as the config accepts them (1-64 letters, digits, '_', '.', '-')."""

Hex32 = Annotated[str, StringConstraints(pattern=HEX32_PATTERN)]
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_PATTERN)]
UnixTime = Annotated[float, Field(ge=0, lt=2**32, allow_inf_nan=False)]
U16 = Annotated[int, Field(ge=0, le=0xFFFF)]
U32 = Annotated[int, Field(ge=0, le=0xFFFF_FFFF)]


def new_msg_id() -> str:
    """A fresh message id: a random uuid4 as 32 lowercase hex digits."""
    return uuid.uuid4().hex


def window_start(t: float) -> int:
    """Start (unix s) of the 15-minute window holding ``t``."""
    return int(t // WINDOW_S) * WINDOW_S


class Message(BaseModel):
    """Fields every payload has. Subclasses fix ``schema`` to one literal value."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    schema_id: str = Field(alias="schema")
    msg_id: Hex32 = Field(default_factory=new_msg_id)
    device: DeviceId
    sent_at: UnixTime = Field(default_factory=time.time)

    def to_json(self) -> str:
        """The payload as sent: compact UTF-8 JSON with the wire field names."""
        return self.model_dump_json(by_alias=True)


class LedgerRecord(Message):
    """One redemption for settlement (topic ``ledger``): which coupon, which campaign, which window.

    ``store`` is the coupon's store restriction (0 = any store); the redeeming store is the
    store level of the topic. The exact redemption time stays on the device.
    """

    schema_id: Literal["ledger.v1"] = Field(default="ledger.v1", alias="schema")
    serial: Hex32
    campaign: U32
    offer: U16
    store: U16
    window_start: Annotated[int, Field(ge=0, lt=2**32)]

    @field_validator("window_start")
    @classmethod
    def _on_a_window_boundary(cls, value: int) -> int:
        if value % WINDOW_S:
            raise ValueError(f"must be a multiple of {WINDOW_S} s (the start of a 15-minute window)")
        return value
