"""One typed config tree, validated at load; every error names its key path.

Types are strict: ``true`` is not an integer and ``"1883"`` is not a number (an integer is fine
where a decimal is expected). Files the config names are checked at load (see
``agent.config_files`` for how relative names are resolved).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.config_files import credentials_dir, missing_video_file, resolve, unreadable
from agent.contract.payloads import CATEGORY_PATTERN as WIRE_CATEGORY_PATTERN
from agent.contract.payloads import NAME_PATTERN as WIRE_NAME_PATTERN
from agent.source_kind import classify_source

NAME_PATTERN = re.compile(WIRE_NAME_PATTERN)
DEFAULT_STATE_DIR = Path("/var/lib/retail-agent")
CATEGORY_PATTERN = re.compile(WIRE_CATEGORY_PATTERN)
DEFAULT_CONSULTATION_CATEGORIES = ("seeds", "bulbs", "plants", "soil", "tools", "pest_control", "other")
"""What a consultation can be about when the config does not say."""


def user_state_dir() -> Path:
    """The state directory of a person running the agent by hand (demo, fetched models)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "retail-agent"


def _two_numbers(value: Any) -> Any:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError("must be two numbers [x, y]")
    if any(v < 0 for v in value):
        raise ValueError("coordinates must not be negative")
    return tuple(value)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


def _source(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a USB camera index, a stream URL or a file path")
    try:
        classify_source(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return value


def _pairs(value: Any) -> Any:
    if isinstance(value, list):
        return [tuple(item) if isinstance(item, list) else item for item in value]
    return value


XY = Annotated[tuple[float, float], BeforeValidator(_two_numbers)]
FilePath = Annotated[Path, Field(strict=False)]
"""A path: TOML gives strings."""
Source = Annotated[str | int, BeforeValidator(_source)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DeviceConfig(_Section):
    id: str = "local"
    tenant: str = "local"
    store: str = "local"
    state_dir: FilePath = DEFAULT_STATE_DIR

    @field_validator("id", "tenant", "store")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value


class LineConfig(_Section):
    """A directed line A→B; ``in`` is a crossing from the left of A→B to its right, as seen on the image."""

    a: XY
    b: XY
    net: bool = False
    band: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description=(
            "half-width of the band around the line in which a foot point is on neither side, as a fraction of the "
            "person's box height; a crossing counts only once the foot point has left the band on the other side "
            "and held there. 0.05 is about one standard deviation of a detected box edge as the tracker's Kalman "
            "filter models it (1/20 of the height), so a side change from jitter alone must beat that on two "
            "frames in a row; a walker at 10 fps covers about 8 % of their height per frame and passes it in "
            "one or two. Wider bands lose crossings of people who stop, turn or are hidden next to the "
            "line. 0 turns the band off"
        ),
    )

    @field_validator("b")
    @classmethod
    def _distinct(cls, value: tuple[float, float], info: Any) -> tuple[float, float]:
        if info.data.get("a") == value:
            raise ValueError("must differ from a")
        return value


class ZoneConfig(_Section):
    polygon: list[XY] = Field(min_length=3)
    queue: bool = False
    min_box_area: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description=(
            "least box area, as a fraction of the frame area, for a track to count in this zone; raise it where "
            "something small (a toy, a picture on a poster) is detected as a person. 0 accepts every box, since "
            "how large a person looks depends on where the camera hangs"
        ),
    )
    min_score: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description=(
            "least detection score for a track to count in this zone in a frame; 0 trusts the tracker's own "
            "thresholds, which already suit the model"
        ),
    )
    seen_grace_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description=(
            "a track counts in the zone's occupancy (and queue length) only while it was matched to a detection "
            "within this many seconds; the tracker keeps a lost track alive for seconds on its prediction, after "
            "the person may have left. The commonest reason a person who is still there goes undetected is "
            "someone walking past in front: two body widths at walking pace, under a second. In one second a "
            "person who has left is at most about one body height beyond the border"
        ),
    )


class MaskConfig(_Section):
    polygon: list[XY] = Field(
        min_length=3,
        description="detections whose foot point lies in this polygon are dropped (a mannequin, a mirror, a poster)",
    )


class CameraConfig(_Section):
    source: Source = 0
    target_fps: float = Field(default=10.0, gt=0, le=120)
    queue_size: int = Field(default=2, ge=1, le=64)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    start_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """A camera that delivers no first frame within this time ends the agent with an error."""
    realtime: bool = True
    lines: dict[str, LineConfig] = Field(default_factory=dict)
    zones: dict[str, ZoneConfig] = Field(default_factory=dict)
    masks: dict[str, MaskConfig] = Field(
        default_factory=dict,
        description="exclusion masks by name: polygons in which detections are dropped before tracking",
    )

    @field_validator("lines", "zones", "masks")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        return value


class DetectorConfig(_Section):
    model: str = "ssdlite-pedestrian"
    family: Literal["ssd", "yolox"] | None = None
    threads: int = Field(default=1, ge=1, le=16)
    score_threshold: float | None = Field(default=None, gt=0, lt=1)
    tiles: Annotated[Literal[1, 2], BeforeValidator(_not_bool)] = 1


class TrackerConfig(_Section):
    """Tracker settings; the score thresholds default to the model's (see models/manifest.toml)."""

    low_threshold: float = Field(default=0.1, gt=0, lt=1)
    high_threshold: float | None = Field(default=None, gt=0, lt=1)
    new_track_threshold: float | None = Field(default=None, gt=0, lt=1)
    match_iou: float = Field(default=0.2, gt=0, lt=1)
    low_match_iou: float = Field(default=0.5, gt=0, lt=1)
    confirm_hits: int = Field(default=3, ge=1, le=100)
    max_lost_s: float = Field(
        default=3.0,
        ge=0,
        le=600,
        description=(
            "seconds a track survives without a matching detection before it ends; long enough for a person to "
            "pass behind another or a pillar, short enough that an id is not handed on to someone else. In "
            "seconds, so frames dropped under load do not shorten it"
        ),
    )
    reassoc_base: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description=(
            "a lost track may take a detection only if its centre lies within reassoc_base + reassoc_speed x "
            "seconds lost box heights of where the track was last seen; the base of half a height allows box "
            "jitter and a step"
        ),
    )
    reassoc_speed: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description=(
            "box heights per second a lost person may have moved (see reassoc_base): people walk at about one body "
            "height per second, 2 allows a brisk walk; beyond it the lost track ends and a new one starts"
        ),
    )

    @field_validator("high_threshold")
    @classmethod
    def _above_low(cls, value: float | None, info: Any) -> float | None:
        low = info.data.get("low_threshold")
        if value is not None and low is not None and value <= low:
            raise ValueError(f"must be above low_threshold ({low})")
        return value


class CountingConfig(_Section):
    hold_s: float = Field(
        default=0.1,
        ge=0,
        le=10,
        description=(
            "a side change at a line counts once the track has been seen on the new side for this many seconds "
            "(two frames at 10 fps); measured in seconds so that frames dropped under load do not change what "
            "is counted. One frame of flicker never counts unless this is 0"
        ),
    )
    zone_min_s: float = Field(
        default=0.1,
        ge=0,
        le=60,
        description=(
            "a track enters (or leaves) a zone once it has been seen inside (or outside) for this many seconds, "
            "so jitter on the border neither splits a visit nor makes one up; two frames at 10 fps"
        ),
    )
    stationary_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description=(
            "a track whose foot point has not moved beyond stationary_radius for this many seconds is stationary: "
            "it leaves every zone (its visit ends when it stopped) until it moves again. A shopper reading a shelf "
            "or waiting in a queue shifts or steps forward within a minute; a mannequin or a sign stand never does. "
            "A track that has not moved at all since it appeared never counts in a zone, whatever this is"
        ),
    )
    stationary_radius: float = Field(
        default=0.25,
        gt=0,
        le=5,
        description=(
            "how far a foot point must get from where it last moved to count as moving, as a fraction of the box "
            "height: a still object's box jitters by a few per cent of its height, one walking step is about a "
            "third of it"
        ),
    )


class StorageConfig(_Section):
    database: FilePath = Path("agent.db")
    events_days: int = Field(default=7, ge=1, le=366, description="raw line and zone events are deleted after this")
    buckets_days: int = Field(default=56, ge=1, le=3660, description="minute buckets are deleted after this")
    redemptions_days: int = Field(
        default=400,
        ge=1,
        le=3660,
        description="coupon redemptions, other devices' reports, conflicts and erasure tombstones are deleted"
        " after this many days, a redemption or tombstone only once its coupon has expired and never while"
        " its settlement record is undelivered; must exceed the longest validity of the coupons issued",
    )
    audit_days: int = Field(default=400, ge=1, le=3660, description="audit rows are deleted after this many days")
    consultations_days: int = Field(
        default=90, ge=1, le=3660, description="consultations logged in the console are deleted after this many days"
    )
    flush_s: float = Field(default=10.0, gt=0, le=3600)


class CouponsConfig(_Section):
    """Offline coupon verification: this device's store, issuer keys by key id, revoked serials."""

    store: int = Field(default=0, ge=0, le=65535)
    revoked: list[str] = Field(default_factory=list)
    issuer_keys: dict[str, str] = Field(default_factory=dict)
    scan_source: Source | None = None
    scan_fps: float = Field(default=5.0, gt=0, le=60)
    confirm_frames: int = Field(default=2, ge=1, le=30)
    deblur_budget_ms: float = Field(
        default=30.0,
        ge=0,
        le=1000,
        description=(
            "per scanned frame, the milliseconds in which the scanner may start restoring a "
            "motion-blurred code (Wiener deconvolution) after plain decoding failed; one restoration "
            "(a few ms) may overrun it; 0 turns deblurring off"
        ),
    )
    deblur_every: int = Field(
        default=2,
        ge=1,
        le=30,
        description=(
            "the live scanner restores one frame in this many unread ones, the sharpest of them "
            "(1: every unread frame; higher bounds the CPU a long blurred showing costs)"
        ),
    )

    @field_validator("revoked")
    @classmethod
    def _serials(cls, value: list[str]) -> list[str]:
        for serial in value:
            if not re.fullmatch(r"[0-9a-fA-F]{32}", serial):
                raise ValueError(f"{serial!r} is not a serial of 32 hex digits")
        return [serial.lower() for serial in value]

    @field_validator("issuer_keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key_id, key in value.items():
            if not key_id.isdigit() or not 0 <= int(key_id) <= 255:
                raise ValueError(f"key id {key_id!r} must be a number from 0 to 255")
            try:
                raw = base64.b64decode(key, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"key {key_id}: not standard base64") from None
            if len(raw) != 32:
                raise ValueError(f"key {key_id}: a raw Ed25519 public key is 32 bytes, got {len(raw)}")
        return value

    def public_keys(self) -> dict[int, bytes]:
        """Issuer public keys (raw 32 bytes) by key id."""
        return {int(key_id): base64.b64decode(key) for key_id, key in self.issuer_keys.items()}

    def revoked_serials(self) -> frozenset[bytes]:
        return frozenset(bytes.fromhex(serial) for serial in self.revoked)


class MqttConfig(_Section):
    """The broker connection; without an ``[mqtt]`` section everything stays in the outbox."""

    host: str = Field(min_length=1)
    port: int = Field(default=8883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    tls: bool = True
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    username: str | None = None
    password_file: FilePath | None = None
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("reconnect_max_s")
    @classmethod
    def _not_below_min(cls, value: float, info: Any) -> float:
        low = info.data.get("reconnect_min_s")
        if low is not None and value < low:
            raise ValueError(f"must not be below reconnect_min_s ({low})")
        return value

    @field_validator("key_file", mode="after")
    @classmethod
    def _pair(cls, value: Path | None, info: Any) -> Path | None:
        if (value is None) != (info.data.get("cert_file") is None):
            raise ValueError("cert_file and key_file go together")
        return value

    @model_validator(mode="after")
    def _cert_needs_key(self) -> MqttConfig:
        if self.cert_file is not None and self.key_file is None:
            raise ValueError("key_file: is required with cert_file")
        return self


class SyncConfig(_Section):
    """Aggregation and delivery: what leaves the device, how coarse, how often."""

    window_minutes: Annotated[Literal[5, 10, 15, 30, 60], BeforeValidator(_not_bool)] = 15
    grace_minutes: int = Field(default=5, ge=0, le=120)
    epsilon_per_day: float = Field(default=1.0, gt=0, le=10)
    contribution_cap: int = Field(default=1, ge=1, le=100)
    consultation_reports: bool = Field(
        default=True,
        description="report consultations as noised counts per (category, outcome) cell in every window",
    )
    consultation_epsilon_per_day: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="the privacy budget of consultation counts per store-day, apart from the coupons' budget",
    )
    display_threshold: int = Field(default=11, ge=1, le=1000)
    """Aggregate counts below this are shown as "<N" (see ``agent.contract.display.display_count``)."""
    health_interval_s: float = Field(default=60.0, ge=5, le=3600)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    outbox_retention_days: int = Field(
        default=7, ge=1, le=366, description="delivered outbox rows are deleted after this many days"
    )
    outbox_max_rows: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="undelivered outbox rows: an error from 80% of this; past it the oldest health reports,"
        " then traffic and coupon aggregates are dropped (never settlement records)",
    )
    coupon_offers: Annotated[list[tuple[int, int]], BeforeValidator(_pairs)] = Field(default_factory=list)
    """(campaign, offer) cells reported in every coupon window, decided in advance."""


class RuntimeConfig(_Section):
    """Supervision: how often components may fail, how long a required one may be down, status rate."""

    max_restarts: int = Field(default=5, ge=0, le=1000)
    restart_window_s: float = Field(default=600.0, gt=0, le=86_400)
    restart_backoff_s: float = Field(default=1.0, ge=0, le=600)
    restart_backoff_max_s: float = Field(default=30.0, ge=0, le=3600)
    max_down_s: float = Field(default=60.0, gt=0, le=3600)
    status_interval_s: float = Field(default=5.0, ge=0.5, le=300)

    @model_validator(mode="after")
    def _backoff_order(self) -> RuntimeConfig:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError("restart_backoff_max_s: must not be below restart_backoff_s")
        return self


class ConsoleConfig(_Section):
    """The staff console: when an idle session locks, how sign-in failures lock it, how often it refreshes."""

    idle_lock_s: float = Field(default=120.0, ge=10, le=86_400)
    max_failed_sign_ins: int = Field(default=5, ge=1, le=100)
    lockout_s: float = Field(default=300.0, ge=10, le=86_400)
    refresh_s: float = Field(default=2.0, ge=0.5, le=600)
    consultation_categories: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONSULTATION_CATEGORIES),
        min_length=1,
        max_length=20,
        description="what a consultation can be about: lower-case words (a-z, 0-9, _), each once; they are"
        " also the fixed cells of the consultation aggregates, so a change changes the cells reported",
    )
    consultation_max_minutes: int = Field(
        default=60, ge=1, le=1440, description="the longest consultation a clerk can log, in minutes"
    )

    @field_validator("consultation_categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if not CATEGORY_PATTERN.match(name):
                raise ValueError(f"{index}: {name[:40]!r} must be a lower-case word of 1-32 letters, digits or '_'")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"each category once; repeated: {', '.join(repeated)}")
        return value


def ed25519_public_key(value: str) -> str:
    """``value`` if it is a raw 32-byte Ed25519 public key in standard base64, else ValueError."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not standard base64") from None
    if len(raw) != 32:
        raise ValueError(f"a raw Ed25519 public key is 32 bytes, got {len(raw)}")
    return value


class FleetConfig(_Section):
    """Signed fleet commands: the key they must be signed with and the fleet groups this device is in."""

    public_key: str = Field(
        description="The fleet's Ed25519 public key (raw 32 bytes, standard base64). A key rotated by a "
        "signed fleet command is kept in the database and wins over this one."
    )
    groups: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Fleet groups this device takes commands for (retail/v1/{tenant}/_fleet/{group}/cmd/#).",
    )
    model_check_s: float = Field(
        default=30.0,
        ge=1.0,
        le=3600.0,
        description="Seconds a model delivered by fleet must keep the pipeline's frame rate before it is kept.",
    )
    model_min_rate_ratio: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="The share of the frame rate before the swap a new model must keep during model_check_s; "
        "below it the previous model is put back.",
    )
    reference_frame: FilePath | None = Field(
        default=None,
        description="An image (relative to the config's folder) with at least one person, for a new model's "
        "reference inference; without it the last frame the running model saw a person in is used "
        "(kept in memory only).",
    )

    @field_validator("public_key")
    @classmethod
    def _ed25519(cls, value: str) -> str:
        return ed25519_public_key(value)

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: list[str]) -> list[str]:
        for group in value:
            if not NAME_PATTERN.match(group):
                raise ValueError(f"group {group[:70]!r} must be 1-64 letters, digits, '_', '.' or '-'")
        return value

    def key(self) -> bytes:
        """The configured fleet public key, raw 32 bytes."""
        return base64.b64decode(self.public_key)


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AgentConfig(_Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    counting: CountingConfig = Field(default_factory=CountingConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    coupons: CouponsConfig = Field(default_factory=CouponsConfig)
    mqtt: MqttConfig | None = None
    fleet: FleetConfig | None = None
    sync: SyncConfig = Field(default_factory=SyncConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @property
    def database_path(self) -> Path:
        """The database file: relative paths are inside the state directory."""
        return self.device.state_dir / self.storage.database


@dataclass(frozen=True)
class ConfigProblem:
    """One bad key: where it is, what it held and what is wrong with it."""

    path: str
    value: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (got {self.value})"


class ConfigError(Exception):
    """A config file that cannot be used; ``problems`` lists every bad key."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def _shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_path(loc: tuple[int | str, ...]) -> str:
    return " -> ".join(str(part) for part in loc) or "(top level)"


# Keys counted in frames before counting moved to seconds; an old config is told what to write instead.
RENAMED_KEYS = {
    "hold_frames": "hold_s (seconds)",
    "zone_min_frames": "zone_min_s (seconds)",
    "max_lost_frames": "max_lost_s (seconds)",
}


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        renamed = RENAMED_KEYS.get(str(error["loc"][-1])) if error["loc"] else None
        return f"unknown key; it was replaced by {renamed}" if renamed else "unknown key"
    if error["type"] == "missing":
        return "is required"
    return str(error["msg"]).removeprefix("Value error, ")


def parse_config(data: dict[str, Any], source: str = "<config>") -> AgentConfig:
    """Validate a decoded TOML document into an :class:`AgentConfig`."""
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            # A bad item inside a two-number point is reported on the point itself.
            if loc and isinstance(loc[-1], int) and error["type"] == "missing":
                loc = loc[:-1]
            problems.append(ConfigProblem(_key_path(loc), _shorten(error.get("input")), _message(error)))
        raise ConfigError(source, problems) from None


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        problem = ConfigProblem("(file)", f"byte 0x{byte:02x}", f"not UTF-8 text at byte offset {exc.start}")
        raise ConfigError(str(path), [problem]) from None


def load_config(path: Path) -> AgentConfig:
    """Read and validate one TOML config file, resolve its relative paths and check its files."""
    try:
        text = _decode(path, path.read_bytes())
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem("(file)", repr(str(path)), exc.strerror or str(exc))]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [ConfigProblem("(syntax)", "", f"not valid TOML: {exc}")]) from None
    config = _with_files(parse_config(data, str(path)), path.parent)
    problems = _file_problems(config)
    if problems:
        raise ConfigError(str(path), problems)
    return config


_SECRET_FILES = ("ca_file", "cert_file", "key_file", "password_file")


def _with_files(config: AgentConfig, folder: Path) -> AgentConfig:
    """Relative paths made absolute: against ``folder``, or systemd's credentials folder for the
    MQTT TLS and password files when it is set."""
    device = config.device.model_copy(update={"state_dir": resolve(config.device.state_dir, folder)})
    camera = config.camera.model_copy(update={"source": _resolve_source(config.camera.source, folder)})
    coupons = config.coupons
    if coupons.scan_source is not None:
        coupons = coupons.model_copy(update={"scan_source": _resolve_source(coupons.scan_source, folder)})
    mqtt = config.mqtt
    if mqtt is not None:
        secrets_folder = credentials_dir() or folder
        files = {key: getattr(mqtt, key) for key in _SECRET_FILES}
        mqtt = mqtt.model_copy(
            update={key: resolve(value, secrets_folder) for key, value in files.items() if value is not None}
        )
    fleet = config.fleet
    if fleet is not None and fleet.reference_frame is not None:
        fleet = fleet.model_copy(update={"reference_frame": resolve(fleet.reference_frame, folder)})
    return config.model_copy(
        update={"device": device, "camera": camera, "coupons": coupons, "mqtt": mqtt, "fleet": fleet}
    )


def _resolve_source(value: str | int, folder: Path) -> str | int:
    kind, spec = classify_source(value)
    return str(resolve(Path(str(spec)), folder)) if kind == "file" else value


def _file_problems(config: AgentConfig) -> list[ConfigProblem]:
    problems = []
    sources = {"camera -> source": config.camera.source, "coupons -> scan_source": config.coupons.scan_source}
    for key, value in sources.items():
        if value is not None and classify_source(value)[0] == "file":
            reason = missing_video_file(Path(str(value)))
            if reason:
                problems.append(ConfigProblem(key, repr(value), reason))
    if config.fleet is not None and config.fleet.reference_frame is not None:
        reason = unreadable(config.fleet.reference_frame)
        if reason:
            problems.append(ConfigProblem("fleet -> reference_frame", repr(str(config.fleet.reference_frame)), reason))
    if config.mqtt is not None:
        for key in _SECRET_FILES:
            path = getattr(config.mqtt, key)
            reason = unreadable(path) if path is not None else None
            if reason:
                problems.append(ConfigProblem(f"mqtt -> {key}", repr(str(path)), reason))
    return problems
