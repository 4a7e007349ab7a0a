"""JSON payload schemas of the v1 MQTT contract; every message is validated before it is queued.

Every payload carries the common fields of design §5:

- ``schema``: the payload's name and version, e.g. ``"ledger.v1"``;
- ``msg_id``: 32 lowercase hex digits (a uuid4), unique, for de-duplication downstream;
- ``device``: the device id (the same as the topic's device level);
- ``sent_at``: when the device wrote the message, as unix seconds (UTC, a float). A message
  queued while offline keeps the time it was written, not the time the broker received it. Two
  kinds are coarser on purpose: a settlement record carries the close of its 15-minute window
  (when it is released), a store report the minute of the redemption.

Fields are numbers or fixed patterns only: no free text can carry personal data off the device,
and no string anywhere (dictionary keys included) is longer than MAX_STRING characters. ``SCHEMAS``
maps each ``schema`` value to its model; ``parse_payload`` validates a received message.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from agent.contract.windows import WINDOW_S, WindowMinutes, on_grid

logger = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Line, zone, model and device names (1-64 letters, digits, '_', '.', '-', starting with a letter or digit).

The config validates its names with this pattern too, so a name it accepts always fits a payload.
"""
HEX32_PATTERN = r"^[0-9a-f]{32}$"
CATEGORY_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
"""Consultation categories: lower-case words (the config validates its categories with this pattern)."""
CONSULT_OUTCOMES = ("bought", "will_return", "not_interested")
"""How a consultation ended, in the order reports list them."""
DEVICE_PATTERN = NAME_PATTERN
"""Device ids as the config accepts them (1-64 letters, digits, '_', '.', '-')."""

Hex32 = Annotated[str, StringConstraints(pattern=HEX32_PATTERN)]
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_PATTERN)]
UnixTime = Annotated[float, Field(ge=0, lt=2**32, allow_inf_nan=False)]
U16 = Annotated[int, Field(ge=0, le=0xFFFF)]
U32 = Annotated[int, Field(ge=0, le=0xFFFF_FFFF)]


def new_msg_id() -> str:
    """A fresh message id: a random uuid4 as 32 lowercase hex digits."""
    return uuid.uuid4().hex


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
    store level of the topic. The exact redemption time stays on the device: no field is finer
    than the window. ``sent_at`` is the window's close (``window_start + 900``), which is also when
    the device releases the record (agent.storage.outbox holds it until then); left out, it is
    filled in, and any other value is refused.
    """

    schema_id: Literal["ledger.v1"] = Field(default="ledger.v1", alias="schema")
    serial: Hex32
    campaign: U32
    offer: U16
    store: U16
    window_start: Annotated[int, Field(ge=0, lt=2**32)]

    @model_validator(mode="before")
    @classmethod
    def _stamped_at_the_close(cls, data: object) -> object:
        if isinstance(data, dict) and "sent_at" not in data:
            start = data.get("window_start")
            if isinstance(start, int) and not isinstance(start, bool):
                return {**data, "sent_at": float(start + WINDOW_S)}
        return data

    @field_validator("window_start")
    @classmethod
    def _on_a_window_boundary(cls, value: int) -> int:
        if value % WINDOW_S:
            raise ValueError(f"must be a multiple of {WINDOW_S} s (the start of a 15-minute window)")
        return value

    @model_validator(mode="after")
    def _no_finer_than_the_window(self) -> LedgerRecord:
        if self.sent_at != self.window_start + WINDOW_S:
            raise ValueError("sent_at must be the close of the window (window_start + 900), never a finer time")
        return self


# Shared field types of the window aggregates, health and store messages.

HEX64_PATTERN = r"^[0-9a-f]{64}$"
VERSION_PATTERN = r"^[0-9][0-9A-Za-z.-]{0,39}$"
"""An agent version such as ``0.1.0`` or ``1.2.0-rc.1`` (no '+': drop a local build suffix first)."""
MAX_STRING = 64
"""No string in any payload (keys included) is longer than this."""
MAX_CELLS = 64
"""At most this many lines, zones or error kinds in one message."""
MAX_COUPON_CELLS = 1024

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Hex64 = Annotated[str, StringConstraints(pattern=HEX64_PATTERN)]
Count = Annotated[int, Field(ge=0, lt=2**31)]
NoisedCount = Annotated[int, Field(gt=-(2**31), lt=2**31)]
Seconds = Annotated[float, Field(ge=0, lt=2**32, allow_inf_nan=False)]
Megabytes = Annotated[float, Field(ge=0, lt=2**40, allow_inf_nan=False)]
Occupancy = Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)]
WindowStart = Annotated[int, Field(ge=0, lt=2**32)]

DWELL_BINS: tuple[tuple[str, float], ...] = (
    ("lt_10s", 10.0),
    ("10s_30s", 30.0),
    ("30s_1m", 60.0),
    ("1m_2m", 120.0),
    ("2m_5m", 300.0),
    ("5m_10m", 600.0),
    ("ge_10m", float("inf")),
)
"""Dwell bins fixed in advance: (label, exclusive upper bound in s); a bin starts where the last ended."""
DwellBin = Literal["lt_10s", "10s_30s", "30s_1m", "1m_2m", "2m_5m", "5m_10m", "ge_10m"]


def dwell_bin(dwell_s: float) -> str:
    """The label of the fixed bin holding a dwell of ``dwell_s`` seconds."""
    if not dwell_s >= 0:
        raise ValueError(f"dwell must be a non-negative number, not {dwell_s}")
    return next(label for label, upper in DWELL_BINS if dwell_s < upper)


class ErrorKind(StrEnum):
    """Kinds of error counted in health reports (counts only, never the messages)."""

    CAMERA = "camera"
    DETECTOR = "detector"
    SCANNER = "scanner"
    STORAGE = "storage"
    TRANSPORT = "transport"
    SYNC = "sync"
    FLEET = "fleet"
    CONFIG = "config"
    OTHER = "other"


ErrorKindKey = Annotated[ErrorKind, Field(strict=False)]
"""An ErrorKind, also given by its value (as decoded JSON has it)."""


class _Part(BaseModel):
    """A nested object of a payload: as strict as the payload itself."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


def _check_window(start: int, minutes: int) -> None:
    if not on_grid(start, minutes):
        raise ValueError(f"window_start {start} is not on the {minutes}-minute grid")


class ModelVersion(_Part):
    """The detector model in use: its name (as in the manifest) and the sha256 of its file."""

    name: Name
    sha256: Hex64


class StateReport(Message):
    """Birth and will (topic ``state``, retained): online or not, with the birth sequence number.

    The will is built at connect time with ``online=False`` and the same ``bd_seq`` as the birth,
    so the platform can tell which session went offline. ``config_version`` is the hex sha256 of
    the applied config; ``model`` is None on a device without a detector.
    """

    schema_id: Literal["state.v1"] = Field(default="state.v1", alias="schema")
    online: bool
    bd_seq: Annotated[int, Field(ge=0, lt=2**32)]
    agent_version: Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
    model: ModelVersion | None
    config_version: Hex64


class LineCounts(_Part):
    """Crossings of one line in a window."""

    in_: Count = Field(alias="in")
    out: Count


class ZoneStats(_Part):
    """One zone in a window: frame-weighted mean and peak occupancy, visits and their dwell.

    ``visits`` counts visits that ended (zone exits) in the window; ``dwell_bins`` has every bin
    of DWELL_BINS, zero or not.
    """

    mean_occupancy: Occupancy
    peak_occupancy: Count
    visits: Count
    dwell_bins: dict[DwellBin, Count]

    @field_validator("dwell_bins")
    @classmethod
    def _every_bin(cls, value: dict[str, int]) -> dict[str, int]:
        missing = [label for label, _ in DWELL_BINS if label not in value]
        if missing:
            raise ValueError(f"every dwell bin must be present; missing {', '.join(missing)}")
        return {label: value[label] for label, _ in DWELL_BINS}


class TrafficReport(Message):
    """Foot traffic of one window (topic ``traffic``): every configured line and zone, zero or not.

    ``minutes_seen`` is how many minutes of the window had processed frames (coverage; a window
    without any is not reported, so missing data is never sent as zero). ``frames_seen`` counts
    the frames processed in the window, known only when a zone is configured (None otherwise).
    """

    schema_id: Literal["traffic.v1"] = Field(default="traffic.v1", alias="schema")
    window_start: WindowStart
    window_minutes: WindowMinutes
    minutes_seen: Annotated[int, Field(ge=1, le=60)]
    frames_seen: Count | None
    lines: Annotated[dict[Name, LineCounts], Field(max_length=MAX_CELLS)]
    zones: Annotated[dict[Name, ZoneStats], Field(max_length=MAX_CELLS)]

    @model_validator(mode="after")
    def _coherent(self) -> TrafficReport:
        _check_window(self.window_start, self.window_minutes)
        if self.minutes_seen > self.window_minutes:
            raise ValueError(f"minutes_seen {self.minutes_seen} exceeds window_minutes {self.window_minutes}")
        return self


class CouponCell(_Part):
    """One (campaign, offer) cell of a window with its noised redemption count (may be negative)."""

    campaign: U32
    offer: U16
    count: NoisedCount


class CouponReport(Message):
    """Coupon redemptions of one window (topic ``coupons``), each cell noised.

    Each count is the true count plus discrete Laplace noise of scale ``contribution_cap /
    epsilon``; negative values are kept (clamping would bias sums). ``epsilon`` is this window's
    share of the store-day budget.
    """

    schema_id: Literal["coupons.v1"] = Field(default="coupons.v1", alias="schema")
    window_start: WindowStart
    window_minutes: WindowMinutes
    cells: Annotated[list[CouponCell], Field(max_length=MAX_COUPON_CELLS)]
    epsilon: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]
    contribution_cap: Annotated[int, Field(ge=1, le=100)]
    noise: Literal["discrete_laplace"] = "discrete_laplace"

    @model_validator(mode="after")
    def _coherent(self) -> CouponReport:
        _check_window(self.window_start, self.window_minutes)
        keys = [(cell.campaign, cell.offer) for cell in self.cells]
        if len(set(keys)) != len(keys):
            raise ValueError("each (campaign, offer) cell must appear once")
        return self


ConsultOutcomeWord = Literal["bought", "will_return", "not_interested"]
Category = Annotated[str, StringConstraints(pattern=CATEGORY_PATTERN)]
MAX_CONSULT_CELLS = 20 * len(CONSULT_OUTCOMES)


class ConsultationCell(_Part):
    """One (category, outcome) cell of a window with its noised count of consultations (may be negative)."""

    category: Category
    outcome: ConsultOutcomeWord
    count: NoisedCount


class ConsultationReport(Message):
    """Consultations of one window (topic ``consultations``): every configured (category, outcome) cell, noised.

    Each count is the true count plus discrete Laplace noise of scale ``contribution_cap /
    epsilon``, like coupon counts, from a store-day budget of its own (``epsilon`` per UTC day).
    No duration, staff id or time finer than the window leaves the device.
    """

    schema_id: Literal["consultations.v1"] = Field(default="consultations.v1", alias="schema")
    window_start: WindowStart
    window_minutes: WindowMinutes
    cells: Annotated[list[ConsultationCell], Field(max_length=MAX_CONSULT_CELLS)]
    epsilon: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]
    contribution_cap: Annotated[int, Field(ge=1, le=100)]
    noise: Literal["discrete_laplace"] = "discrete_laplace"

    @model_validator(mode="after")
    def _coherent(self) -> ConsultationReport:
        _check_window(self.window_start, self.window_minutes)
        keys = [(cell.category, cell.outcome) for cell in self.cells]
        if len(set(keys)) != len(keys):
            raise ValueError("each (category, outcome) cell must appear once")
        return self


class HealthReport(Message):
    """Device health (topic ``health``, QoS 0): rates, resources, outbox and error counts.

    ``fps`` is the processing rate over the last minute. ``dropped_frames``, ``errors`` and
    ``restarts`` count since the agent started; ``oldest_pending_s`` is the age of the oldest
    undelivered outbox message (None when the outbox is empty).

    Optional fields added within health.v1 (absent or null from agents that predate them):
    ``restarts`` (component name -> restarts), ``store_conflicts`` (double uses of a coupon recorded
    on this device), ``privacy_budget_left`` (epsilon of today's UTC store-day not yet spent),
    ``outbox_limit`` (``sync.outbox_max_rows``; the agent raises an alarm from 80% of it) and
    ``outbox_dropped`` (undelivered messages dropped past that limit, ever).
    """

    schema_id: Literal["health.v1"] = Field(default="health.v1", alias="schema")
    fps: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
    dropped_frames: Count
    cpu_percent: Annotated[float, Field(ge=0, le=25_600, allow_inf_nan=False)]
    memory_mb: Megabytes
    disk_free_mb: Megabytes
    outbox_depth: Count
    oldest_pending_s: Seconds | None
    errors: Annotated[dict[ErrorKindKey, Count], Field(max_length=len(ErrorKind))]
    restarts: Annotated[dict[Name, Count], Field(max_length=MAX_CELLS)] | None = None
    store_conflicts: Count | None = None
    privacy_budget_left: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] | None = None
    outbox_limit: Count | None = None
    outbox_dropped: Count | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "restarts",
        "store_conflicts",
        "privacy_budget_left",
        "outbox_limit",
        "outbox_dropped",
    )
    """Fields added within health.v1: left out of the wire form when not known."""

    def to_json(self) -> str:
        unknown = {name for name in self.OPTIONAL if getattr(self, name) is None}
        return self.model_dump_json(by_alias=True, exclude=unknown)


class StoreRedeemed(Message):
    """A serial redeemed on this device, shared with the other devices of the store (``_store/redeemed``).

    It is sent at once (the other devices must refuse the coupon quickly), so this device writes
    ``redeemed_at`` and ``sent_at`` floored to the minute. Reports are accepted at any precision,
    so devices still sending exact times keep guarding the store.
    """

    schema_id: Literal["store_redeemed.v1"] = Field(default="store_redeemed.v1", alias="schema")
    serial: Hex32
    redeemed_at: UnixTime


class JobState(StrEnum):
    """The states of a fleet job (AWS IoT Jobs, plus ROLLED_BACK)."""

    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    TIMED_OUT = "TIMED_OUT"
    CANCELED = "CANCELED"
    ROLLED_BACK = "ROLLED_BACK"


JobStateValue = Annotated[JobState, Field(strict=False)]
WORD_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Word = Annotated[str, StringConstraints(pattern=WORD_PATTERN)]
"""An identifier or enumerated word: a step, a reason code, a command type, a dotted config key path."""
DetailValue = Annotated[int, Field(ge=-(2**53), le=2**53)] | bool | Word


class JobStatus(Message):
    """The execution status of one fleet job (topic ``jobs/{job_id}``).

    ``version`` grows by one with every state change or step, also across restarts, so the platform
    keeps the newest status whatever order deliveries arrive in. ``step`` names the stage a job is
    in (e.g. ``applying``, ``verifying``), ``reason`` why it ended as it did, ``details`` a few
    numbers or words about the result.
    """

    schema_id: Literal["jobs.v1"] = Field(default="jobs.v1", alias="schema")
    job_id: Name
    type: Word
    state: JobStateValue
    version: Annotated[int, Field(ge=1, lt=2**31)]
    step: Word | None = None
    reason: Word | None = None
    details: Annotated[dict[Word, DetailValue], Field(max_length=16)] = Field(default_factory=dict)


class ConfigReported(Message):
    """The config a device applied, or why it rejected a desired one (topic ``config/reported``, retained).

    ``desired_version`` is the operator's version of the desired document; ``config_version`` is the
    hex sha256 of the config in force afterwards (as the birth reports it). A rejection lists the
    bad keys as dotted key paths (``camera.lines.entrance.a``; ``_syntax`` for a document that is
    not TOML); what is wrong with each is in the device's log. The previous config stays in force.
    """

    schema_id: Literal["config_reported.v1"] = Field(default="config_reported.v1", alias="schema")
    desired_version: Annotated[int, Field(ge=0, lt=2**53)]
    applied: bool
    config_version: Hex64
    problems: Annotated[list[Word], Field(max_length=MAX_CELLS)] = Field(default_factory=list)


SCHEMAS: dict[str, type[Message]] = {
    "state.v1": StateReport,
    "traffic.v1": TrafficReport,
    "coupons.v1": CouponReport,
    "consultations.v1": ConsultationReport,
    "ledger.v1": LedgerRecord,
    "health.v1": HealthReport,
    "store_redeemed.v1": StoreRedeemed,
    "jobs.v1": JobStatus,
    "config_reported.v1": ConfigReported,
}
"""Every payload model of the contract by its ``schema`` value."""


class UnknownSchema(ValueError):
    """A received payload names no schema of this contract."""


def parse_payload(data: str | bytes) -> Message:
    """Validate received JSON against the model its ``schema`` field names.

    Raises UnknownSchema when the schema is missing or unknown, and pydantic's ValidationError
    (a ValueError) when the JSON is malformed or does not fit the model.
    """
    try:
        schema = json.loads(data).get("schema")
    except (ValueError, AttributeError, UnicodeDecodeError):
        schema = None
    model = SCHEMAS.get(schema) if isinstance(schema, str) else None
    if model is None:
        raise UnknownSchema(f"unknown payload schema {str(schema)[:MAX_STRING]!r}")
    return model.model_validate_json(data)
