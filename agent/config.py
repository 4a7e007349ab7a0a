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
    id: str = Field(
        default="local",
        description=(
            "this device's id (from provisioning): its segment of the MQTT topics it publishes "
            "(retail/v1/{tenant}/{store}/{id}/...) and its MQTT client id by default; 1-64 letters, digits, '_', "
            "'.' or '-'"
        ),
    )
    tenant: str = Field(
        default="local", description="the tenant (retailer) the device belongs to, a segment of its MQTT topics"
    )
    store: str = Field(default="local", description="the store the device is in, a segment of its MQTT topics")
    state_dir: FilePath = Field(
        default=DEFAULT_STATE_DIR,
        description=(
            "folder for the database and delivered models; relative to the config file's folder when relative. "
            "The default is where the systemd unit's StateDirectory= puts it"
        ),
    )

    @field_validator("id", "tenant", "store")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value


class LineConfig(_Section):
    """A directed line A→B; ``in`` is a crossing from the left of A→B to its right, as seen on the image."""

    a: XY = Field(
        description="start point A of the directed line, [x, y] in pixels or normalised to [0, 1] (floats ≤ 1)"
    )
    b: XY = Field(description="end point B of the line, as a; must differ from a")
    net: bool = Field(
        default=False,
        description=(
            "true: one track's crossings of this line cancel out and it counts at most once, by the sign of its net "
            "crossings (a person who steps in and back out counts nothing); false counts every crossing, as a "
            "door counter does"
        ),
    )
    band: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description=(
            "half-width of the band around the line in which a foot point is on neither side, as a fraction of the "
            "person's box height; a crossing counts only once the foot point has left the band on the other side "
            "and held there (counting.hold_s). 0.02 is one standard deviation of the foot point's jitter from "
            "frame to frame as measured for the shipped model on the first half of the sample clip (0.019 of "
            "the box height; 0.013 for YOLOX-Nano; tests/benchmarks/bench_counting_rules.py prints it), so a side "
            "change from jitter alone must beat that on two frames in a row, while a walker at 10 fps covers "
            "about 8 % of their height per frame and passes it in one. A wider band delays each crossing until "
            "the foot has left it and loses crossings of people who stop, turn or are hidden next to the line: "
            "0.05 cost the shipped model 4 of 61 crossings on that half. 0 turns the band off"
        ),
    )

    @field_validator("b")
    @classmethod
    def _distinct(cls, value: tuple[float, float], info: Any) -> tuple[float, float]:
        if info.data.get("a") == value:
            raise ValueError("must differ from a")
        return value


class ZoneConfig(_Section):
    polygon: list[XY] = Field(
        min_length=3,
        description="the zone's outline: at least 3 points [x, y], in pixels or normalised to [0, 1]",
    )
    queue: bool = Field(
        default=False,
        description="true: the zone's occupancy is also reported as queue length (queue_mean, queue_max)",
    )
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
    source: Source = Field(
        default=0,
        description=(
            "the camera: a USB index (0 is the first camera), an rtsp(s):// or http(s):// URL, or a video file "
            "(relative to the config file's folder; it must exist)"
        ),
    )
    target_fps: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description=(
            "frames per second processed; frames beyond it are skipped. 10 fps sees a walker about every 8 % of "
            "their height, enough for the line band and holds, at a cost a small CPU sustains"
        ),
    )
    queue_size: int = Field(
        default=2,
        ge=1,
        le=64,
        description=(
            "frames waiting for inference; when full the oldest is dropped (and counted), so a slow detector "
            "never delays capture. 2 keeps latency at most two frames"
        ),
    )
    reconnect_max_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds: the cap of the exponential backoff between attempts to reopen a lost camera",
    )
    start_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description=(
            "seconds: a camera that delivers no first frame within this time ends the agent with an error, so "
            "systemd restarts it; a network camera may take tens of seconds to boot"
        ),
    )
    realtime: bool = Field(
        default=True,
        description=(
            "for a video file source: true reads it at its own frame rate, as a camera would deliver it; false "
            "reads it as fast as frames are processed (counting a recording)"
        ),
    )
    lines: dict[str, LineConfig] = Field(
        default_factory=dict,
        description="counting lines by name; crossings of each are counted in and out",
    )
    zones: dict[str, ZoneConfig] = Field(
        default_factory=dict,
        description="zones by name: occupancy, visits and dwell per zone",
    )
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
    model: str = Field(
        default="ssdlite-pedestrian",
        description=(
            "a model name from models/manifest.toml or a path to an ONNX file; the default ships with the agent "
            "and works offline, YOLOX-Nano is more accurate in crowds"
        ),
    )
    family: Literal["ssd", "yolox"] | None = Field(
        default=None,
        description="how to decode the model's output; needed only for an ONNX file not in the manifest",
    )
    threads: int = Field(
        default=1,
        ge=1,
        le=16,
        description="ONNX Runtime threads for inference; 1 leaves the other cores to capture, scanning and sync",
    )
    score_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description=(
            "least detection score kept; unset uses the model's from the manifest, low enough for the tracker's "
            "second stage to continue tracks through occlusion"
        ),
    )
    tiles: Annotated[Literal[1, 2], BeforeValidator(_not_bool)] = Field(
        default=1,
        description=(
            "2 runs an SSD model on a 2x2 grid of overlapping tiles, finding smaller people at four times the "
            "cost; 1 runs it once on the whole frame. SSD models only"
        ),
    )


class MotionConfig(_Section):
    """Motion-gated inference: the detector runs on frames with motion, while someone is followed, and
    at a keep-alive rate otherwise (see ``agent.vision.motion``)."""

    enabled: bool = Field(default=True, description="run the detector only where the motion gate says so")
    keepalive_s: float = Field(
        default=2.0, gt=0, le=3600, description="seconds between detector runs on a still scene with nobody in view"
    )
    width: int = Field(
        default=160, ge=16, le=1920, description="width in pixels of the grey frame the background model uses"
    )
    threshold: int = Field(
        default=20, ge=1, le=254, description="grey-level change (0-255) that makes a pixel of the small frame move"
    )
    min_area: float = Field(
        default=0.002, ge=0, lt=1, description="share of the small frame that must move for the frame to have motion"
    )
    learning_rate: float = Field(
        default=0.05, gt=0, le=1, description="how fast the background takes in each frame (running-average weight)"
    )
    settle_s: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description=(
            "seconds the detector goes on running after motion stops while people are in view, so the tracker "
            "sees where they came to rest; 0.5 is five frames at 10 fps, and in seconds so that frames dropped "
            "under load do not lengthen it"
        ),
    )


class TrackerConfig(_Section):
    """Tracker settings; the score thresholds default to the model's (see models/manifest.toml)."""

    low_threshold: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description=(
            "detections scoring below this are ignored; those between it and high_threshold may only continue "
            "an existing track (a person half hidden scores low), never start one"
        ),
    )
    high_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description=(
            "detections scoring at least this are matched first, to confirmed tracks seen or lost; unset uses "
            "the model's track_threshold from the manifest, where clearly visible people score. Must be above "
            "low_threshold"
        ),
    )
    new_track_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description=(
            "least score of an unmatched detection to start a new track; unset uses the model's from the "
            "manifest, a little above high_threshold so that a doubtful box does not create a person"
        ),
    )
    match_iou: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description=(
            "least overlap (intersection over union) between a track's predicted box and a high-score detection "
            "for them to match; low, because at 10 fps a walker's box moves a good part of its width per frame"
        ),
    )
    low_match_iou: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="the same for low-score detections; stricter, as they are less certain to be the same person",
    )
    confirm_s: float = Field(
        default=0.2,
        ge=0,
        le=10,
        description=(
            "seconds a new track must be matched in every frame, from its first frame to the one that confirms it, "
            "before it counts; only confirmed tracks count, so a detection flickering for a frame or two never "
            "becomes a person. 0.2 is the third frame at 10 fps; in seconds, so frames dropped under load do not "
            "delay it"
        ),
    )
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
            "a side change at a line counts once the track has been seen on the new side for this many seconds: "
            "the time from the first frame there to the frame that counts, so 0.1 counts on the second frame at "
            "10 fps (the former two-frame hold) and 0 on the first; measured in seconds so that frames dropped "
            "under load do not change what is counted. One frame of flicker never counts unless this is 0"
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
    database: FilePath = Field(
        default=Path("agent.db"), description="the SQLite database file; relative paths are inside device.state_dir"
    )
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
    flush_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "seconds between writes of counted events and finished minute buckets to the database (and retries "
            "after a storage error); few, larger transactions spare the storage, and a power cut loses at most this "
            "much"
        ),
    )


class CouponsConfig(_Section):
    """Offline coupon verification: this device's store, issuer keys by key id, revoked serials."""

    store: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "this device's store number; a coupon issued for another store is refused, one for store 0 is good "
            "in every store"
        ),
    )
    revoked: list[str] = Field(
        default_factory=list,
        description="serials (32 hex digits) of coupons refused as revoked, besides those revoked at the desk",
    )
    issuer_keys: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'issuer public keys by key id ("0" to "255"): raw 32-byte Ed25519 keys in standard base64; a '
            "coupon signed by a key not listed is refused as from an unknown issuer"
        ),
    )
    scan_source: Source | None = Field(
        default=None,
        description=(
            "camera read for coupon QR codes: USB index, stream URL or file, as camera.source; unset: no scanning"
        ),
    )
    scan_fps: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="frames per second searched for QR codes; 5 answers within a fraction of a second on a small CPU",
    )
    confirm_frames: int = Field(
        default=2,
        ge=1,
        le=30,
        description="frames a code must be read in before it is acted on, so a half-read code in motion is not",
    )
    accept_signed_at_once: bool = Field(
        default=True,
        description=(
            "act on a code read in a single frame when its issuer signature verifies (a misread "
            "cannot); false: every code waits for confirm_frames"
        ),
    )
    deblur_budget_ms: float = Field(
        default=30.0,
        ge=0,
        le=1000,
        description=(
            "per scanned frame, the milliseconds in which the scanner may start restoring a "
            "motion-blurred code (Wiener deconvolution) after plain decoding failed; one restoration "
            "(up to about 30 ms on a small CPU) may overrun it; 0 turns deblurring off"
        ),
    )
    deblur_every: int = Field(
        default=1,
        ge=1,
        le=30,
        description=(
            "the live scanner restores one frame in this many unread ones, the sharpest of them "
            "(1: every unread frame; higher bounds the CPU a long blurred showing costs)"
        ),
    )
    fuse_frames: bool = Field(
        default=False,
        description=(
            "also restore each unread frame in which something moved around its code, alone and together "
            "with the previous one (two-frame Wiener filter: a coupon smeared differently in two frames "
            "is read from the pair), within a 60 ms budget per frame; costs about 15-20 ms more per such "
            "frame, and read 0-1 points more 1-s showings of the motion set than every frame alone"
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

    host: str = Field(min_length=1, description="the broker's host name or address")
    port: int = Field(default=8883, ge=1, le=65535, description="the broker's port; 8883 is MQTT over TLS")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT protocol version; 3.1.1 for a broker without MQTT 5"
    )
    client_id: str | None = Field(
        default=None, description="the MQTT client id; unset uses device.id, which the broker's ACL expects"
    )
    keepalive_s: int = Field(
        default=30,
        ge=5,
        le=3600,
        description="seconds between keep-alive pings; the broker sends the will (offline) after 1.5 times this",
    )
    tls: bool = Field(default=True, description="connect over TLS; false only on a trusted local network or a test")
    ca_file: FilePath | None = Field(
        default=None,
        description=(
            "CA certificate that signed the broker's certificate; unset trusts the system's CAs. Relative to "
            "$CREDENTIALS_DIRECTORY under systemd, else to the config file's folder"
        ),
    )
    cert_file: FilePath | None = Field(
        default=None,
        description="this device's client certificate (its CN is the device id, mapped to the ACL); needs key_file",
    )
    key_file: FilePath | None = Field(default=None, description="the private key of cert_file; resolved like ca_file")
    username: str | None = Field(
        default=None, description="user name, for a broker that authenticates by password instead of certificate"
    )
    password_file: FilePath | None = Field(
        default=None,
        description="file holding the password for username (kept out of the config); resolved like ca_file",
    )
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=60, description="seconds: first wait before reconnecting to a lost broker"
    )
    reconnect_max_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description=(
            "seconds: the reconnect wait doubles up to this; a minute bounds both the delay after an outage "
            "and the load a fleet puts on a broker coming back"
        ),
    )

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

    window_minutes: Annotated[Literal[5, 10, 15, 30, 60], BeforeValidator(_not_bool)] = Field(
        default=15,
        description=(
            "length of the aggregation windows, on a fixed UTC grid; coarser windows reveal less about when "
            "any one person came"
        ),
    )
    grace_minutes: int = Field(
        default=5,
        ge=0,
        le=120,
        description="minutes late data is waited for after a window ends before it is closed and sent",
    )
    epsilon_per_day: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description=(
            "privacy budget of coupon counts per store-day: each cell gets discrete Laplace noise of scale "
            "contribution_cap / epsilon_per_day. Smaller is more private and noisier"
        ),
    )
    contribution_cap: int = Field(
        default=1,
        ge=1,
        le=100,
        description="redemptions (and consultations) one person may add to a store-day's counts, at most",
    )
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
    display_threshold: int = Field(
        default=11,
        ge=1,
        le=1000,
        description='aggregate counts below this are shown as "<N" (demo summary, console), so a small count '
        "does not point at a few people",
    )
    health_interval_s: float = Field(
        default=60.0, ge=5, le=3600, description="seconds between health reports while connected to the broker"
    )
    batch_size: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="outbox messages published and awaiting the broker's acknowledgement at once",
    )
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
    coupon_offers: Annotated[list[tuple[int, int]], BeforeValidator(_pairs)] = Field(
        default_factory=list,
        description=(
            "[campaign, offer] cells reported in every coupon window, zero or not, decided in advance so that no "
            "cell exists because somebody redeemed"
        ),
    )


class RuntimeConfig(_Section):
    """Supervision: how often components may fail, how long a required one may be down, status rate."""

    max_restarts: int = Field(
        default=5,
        ge=0,
        le=1000,
        description=(
            "failures of a required component within restart_window_s before the agent gives up and exits 1, "
            "leaving systemd to restart it whole"
        ),
    )
    restart_window_s: float = Field(
        default=600.0, gt=0, le=86_400, description="seconds over which max_restarts is counted"
    )
    restart_backoff_s: float = Field(
        default=1.0, ge=0, le=600, description="seconds before the first restart of a failed component; doubles"
    )
    restart_backoff_max_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="seconds: the cap of the doubling restart delay; not below restart_backoff_s",
    )
    max_down_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="seconds a required component may be down before the systemd watchdog is withheld",
    )
    status_interval_s: float = Field(
        default=5.0,
        ge=0.5,
        le=300,
        description=(
            "seconds between status rows (read by `retail-agent status` and the console); the agent counts as "
            "running while its row is fresher than three intervals"
        ),
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> RuntimeConfig:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError("restart_backoff_max_s: must not be below restart_backoff_s")
        return self


class ConsoleConfig(_Section):
    """The staff console: when an idle session locks, how sign-in failures lock it, how often it refreshes."""

    idle_lock_s: float = Field(
        default=120.0,
        ge=10,
        le=86_400,
        description="seconds without a key after which the console signs the clerk out",
    )
    max_failed_sign_ins: int = Field(
        default=5,
        ge=1,
        le=100,
        description="refused sign-ins in a row that lock the console (also across restarts), against PIN guessing",
    )
    lockout_s: float = Field(
        default=300.0, ge=10, le=86_400, description="seconds the console stays locked after max_failed_sign_ins"
    )
    refresh_s: float = Field(
        default=2.0,
        ge=0.5,
        le=600,
        description="seconds between reads of the Today, Consult and Device screens and the status line",
    )
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
        "below it the previous model is put back, as it is when one inference of the new model takes more than "
        "1 / model_min_rate_ratio times as long as one of the previous model.",
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
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="the least severity logged (to the journal under systemd)"
    )


class AgentConfig(_Section):
    device: DeviceConfig = Field(
        default_factory=DeviceConfig, description="who this device is and where it keeps its state"
    )
    camera: CameraConfig = Field(
        default_factory=CameraConfig, description="the counting camera, its lines, zones and exclusion masks"
    )
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="the person detection model")
    tracker: TrackerConfig = Field(
        default_factory=TrackerConfig, description="how detections are linked into tracks from frame to frame"
    )
    motion: MotionConfig = Field(
        default_factory=MotionConfig,
        description=(
            "motion-gated inference: the detector runs on frames with motion and while someone is in view, and "
            "otherwise only at a keep-alive rate, saving CPU on an empty scene"
        ),
    )
    counting: CountingConfig = Field(
        default_factory=CountingConfig, description="the rules that turn tracks into crossings and zone visits"
    )
    storage: StorageConfig = Field(
        default_factory=StorageConfig, description="the database and how long each kind of row is kept"
    )
    coupons: CouponsConfig = Field(
        default_factory=CouponsConfig, description="offline coupon verification and QR scanning"
    )
    mqtt: MqttConfig | None = Field(
        default=None,
        description="the broker connection; without this section nothing is sent and everything waits in the outbox",
    )
    fleet: FleetConfig | None = Field(
        default=None, description="signed fleet commands (model and config updates); needs [mqtt]"
    )
    sync: SyncConfig = Field(
        default_factory=SyncConfig, description="aggregation and anonymisation of what leaves the device"
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig, description="supervision of the agent's components and its status heartbeat"
    )
    console: ConsoleConfig = Field(default_factory=ConsoleConfig, description="the staff console")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="the agent's log")

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
    "confirm_hits": "confirm_s (seconds)",
    "settle_frames": "settle_s (seconds)",
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
