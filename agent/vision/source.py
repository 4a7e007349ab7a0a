"""Video sources: a file, an RTSP/HTTP stream or a USB camera, read through OpenCV.

``read_frames`` reads a file in order as fast as it decodes; ``agent.vision.capture.FrameSource``
reads live sources on a thread of its own. Frames stay in memory.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
import numpy.typing as npt

from agent.source_kind import SourceKind, classify_source
from agent.vision.backoff import RateGate

logger = logging.getLogger(__name__)

FALLBACK_FPS = 25.0
CORRUPT_WARNING_EVERY_S = 10.0


class SourceError(Exception):
    """A video source cannot be opened; the message says which and why."""


@dataclass(frozen=True)
class SourceSpec:
    """Where frames come from: a file path, a stream URL or a USB camera index."""

    kind: SourceKind
    value: str | int

    def __post_init__(self) -> None:
        if self.kind == "usb":
            if not isinstance(self.value, int) or isinstance(self.value, bool) or self.value < 0:
                raise ValueError(f"a USB camera needs an index >= 0, got {self.value!r}")
        elif self.kind in ("file", "url"):
            if not isinstance(self.value, str) or not self.value:
                raise ValueError(f"a {self.kind} source needs a non-empty string, got {self.value!r}")
        else:
            raise ValueError(f"unknown source kind {self.kind!r}")

    @property
    def is_live(self) -> bool:
        """True for cameras and streams, False for files."""
        return self.kind != "file"

    @property
    def label(self) -> str:
        """A name for logs and records: the path, the URL without its password, or ``usb:N``."""
        if self.kind == "usb":
            return f"usb:{self.value}"
        if self.kind == "url":
            return _redact(str(self.value))
        return str(self.value)

    def __str__(self) -> str:
        return self.label


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def parse_source(value: str | int | Path) -> SourceSpec:
    """Read a configured source: an int or digits is a USB index, a stream URL, else a file path."""
    try:
        kind, spec = classify_source(value)
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    return SourceSpec(kind, spec)


@dataclass(frozen=True)
class FrameClock:
    """Where a live frame's two times come from: the wall clock and a monotonic clock."""

    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class Frame:
    """One decoded frame with its two times, both in seconds.

    ``index`` counts frames read from the stream from 0. ``t`` is wall time (unix seconds): it
    places the frame in minutes, windows and events, and may step when the clock is set. ``mono``
    never goes backwards: durations (dwell, timeouts) are differences of it. For live sources
    they are the wall and monotonic clocks at grab; for files, ``t`` is the file start time plus
    the stream position and ``mono`` the stream position. ``image`` is BGR uint8 (H, W, 3).
    """

    index: int
    t: float
    image: npt.NDArray[np.uint8]
    mono: float

    def __post_init__(self) -> None:
        if not _is_bgr(self.image):
            raise ValueError(f"image must be BGR uint8 (H, W, 3), got {_describe(self.image)}")
        if not (math.isfinite(self.t) and math.isfinite(self.mono)):
            raise ValueError(f"frame times must be finite, got t={self.t}, mono={self.mono}")


def _is_bgr(image: Any) -> bool:
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.size > 0
    )


def _describe(image: Any) -> str:
    if isinstance(image, np.ndarray):
        return f"{image.dtype} {image.shape}"
    return type(image).__name__


@dataclass(frozen=True)
class SourceStats:
    """Counters of a source: frames read from the stream, handed out, dropped from a full queue,
    skipped to keep to the target rate, undecodable, and reconnect attempts."""

    read: int = 0
    delivered: int = 0
    dropped: int = 0
    skipped: int = 0
    corrupt: int = 0
    reconnects: int = 0


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the readers use."""

    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, Any]: ...
    def get(self, prop_id: int) -> float: ...
    def release(self) -> None: ...


def open_capture(spec: SourceSpec, *, open_timeout_s: float = 5.0, read_timeout_s: float = 5.0) -> Any:
    """Open ``spec`` with OpenCV and return the ``cv2.VideoCapture``, or raise SourceError.

    Stream timeouts bound both the connection and each read, so a dead camera never hangs.
    """
    if spec.kind == "file":
        path = Path(str(spec.value))
        if not path.exists():
            raise SourceError(f"cannot open video file {path}: no such file")
        if path.is_dir():
            raise SourceError(f"cannot open video file {path}: is a directory")
        if not os.access(path, os.R_OK):
            raise SourceError(f"cannot open video file {path}: permission denied")
        return _open(str(path), cv2.CAP_ANY, [], f"cannot open video file {path}: not a video OpenCV can read")
    if spec.kind == "usb":
        index = int(spec.value)
        if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
            raise SourceError(f"cannot open USB camera {index}: /dev/video{index} does not exist")
        return _open(index, cv2.CAP_ANY, [], f"cannot open USB camera {index}: no camera there or it is busy")
    backend = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        max(1, round(open_timeout_s * 1000)),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        max(1, round(read_timeout_s * 1000)),
    ]
    why = f"cannot open video stream {spec.label}: refused, timed out after {open_timeout_s:g} s, or not video"
    return _open(str(spec.value), backend, params, why)


def _open(target: str | int, backend: int, params: list[int], failure: str) -> Any:
    try:
        cap = cv2.VideoCapture(target, backend, params)
    except cv2.error as exc:
        raise SourceError(f"{failure} ({exc})") from exc
    if not cap.isOpened():
        cap.release()
        raise SourceError(failure)
    return cap


class Counters:
    """Mutable counters behind a lock; ``snapshot`` gives the frozen ``SourceStats``."""

    def __init__(self, lock: threading.Condition | threading.Lock) -> None:
        self.lock = lock
        self.read = self.delivered = self.dropped = self.skipped = self.corrupt = self.reconnects = 0

    def snapshot(self) -> SourceStats:
        with self.lock:
            return SourceStats(self.read, self.delivered, self.dropped, self.skipped, self.corrupt, self.reconnects)


class CorruptLog:
    """Warns about corrupt frames at most once per interval, with how many there were."""

    def __init__(self, label: str, interval_s: float = CORRUPT_WARNING_EVERY_S) -> None:
        self._label = label
        self._interval_s = interval_s
        self._last: float | None = None
        self._pending = 0

    def note(self, index: int, what: str) -> None:
        self._pending += 1
        now = time.monotonic()
        if self._last is None or now - self._last >= self._interval_s:
            logger.warning("%s: skipped %d corrupt frame(s), latest #%d (%s)", self._label, self._pending, index, what)
            self._last, self._pending = now, 0

    def flush(self) -> None:
        if self._pending:
            logger.warning("%s: skipped %d more corrupt frame(s)", self._label, self._pending)
            self._pending = 0


class FrameReader:
    """Frames of one open capture in stream order, as fast as they decode (see ``read_frames``).

    Iterating ends when the capture yields nothing more, then releases it. ``read`` is the step
    underneath: a Frame, or None for a frame skipped or found corrupt (``ended`` tells the end).
    """

    def __init__(
        self,
        spec: SourceSpec,
        cap: Capture,
        *,
        gate: RateGate | None = None,
        first_index: int = 0,
        time_base: float = 0.0,
        mono_base: float = 0.0,
        counters: Counters | None = None,
        corrupt_log: CorruptLog | None = None,
        clock: FrameClock | None = None,
    ) -> None:
        self.spec = spec
        self._cap = cap
        self._counters = counters or Counters(threading.Lock())
        self._corrupt_log = corrupt_log or CorruptLog(spec.label)
        self._gate = gate
        self._time_base = time_base
        self._mono_base = mono_base
        self._clock = clock or FrameClock()
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.period = 1.0 / (fps if math.isfinite(fps) and 0 < fps <= 1000 else FALLBACK_FPS)
        self.next_index = first_index
        self.grabbed = 0
        self.last_t: float | None = None
        self.last_mono: float | None = None
        self._last_pos: float | None = None
        self._shape: tuple[int, ...] | None = None
        self.ended = False
        self._released = False

    @property
    def stats(self) -> SourceStats:
        return self._counters.snapshot()

    def __iter__(self) -> FrameReader:
        return self

    def __next__(self) -> Frame:
        while not self.ended:
            frame = self.read()
            if frame is not None:
                with self._counters.lock:
                    self._counters.delivered += 1
                return frame
        if not self._released:
            logger.info("%s: end of stream after %d frames", self.spec.label, self.grabbed)
            self.close()
        raise StopIteration

    def close(self) -> None:
        """Release the capture; reading then ends."""
        self.ended = True
        if not self._released:
            self._released = True
            self._cap.release()
            self._corrupt_log.flush()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self) -> Frame | None:
        """The next frame; None if it was skipped by the rate gate or corrupt, or at the end."""
        if self.ended:
            return None
        try:
            grabbed = bool(self._cap.grab())
        except cv2.error as exc:
            logger.warning("%s: reading a frame failed: %s", self.spec.label, exc)
            grabbed = False
        if not grabbed:
            self.ended = True
            return None
        index = self.next_index
        self.next_index += 1
        self.grabbed += 1
        with self._counters.lock:
            self._counters.read += 1
        if self.spec.is_live:
            t, mono = self._clock.wall(), self._clock.mono()
        else:
            position = self._position()
            t, mono = self._time_base + position, self._mono_base + position
        self.last_t, self.last_mono = t, mono
        if self._gate is not None and not self._gate.admit(mono):
            with self._counters.lock:
                self._counters.skipped += 1
            return None
        try:
            ok, image = self._cap.retrieve()
        except cv2.error:
            ok, image = False, None
        if not ok or not _is_bgr(image) or (self._shape is not None and image.shape != self._shape):
            with self._counters.lock:
                self._counters.corrupt += 1
            expected = f", expected {self._shape}" if self._shape is not None and ok else ""
            self._corrupt_log.note(index, f"{_describe(image) if ok else 'no image'}{expected}")
            return None
        self._shape = image.shape
        return Frame(index, t, image, mono)

    def _position(self) -> float:
        """Seconds from the start of the file, from the stream, never going backwards."""
        pos_ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        pos = pos_ms / 1000.0 if math.isfinite(pos_ms) and pos_ms >= 0 else (self.grabbed - 1) * self.period
        if self._last_pos is not None and pos <= self._last_pos:
            pos = self._last_pos + self.period
        self._last_pos = pos
        return pos


def read_frames(
    spec: SourceSpec,
    *,
    file_start_t: float | None = None,
    target_fps: float | None = None,
    open_timeout_s: float = 5.0,
    read_timeout_s: float = 5.0,
) -> FrameReader:
    """Open ``spec`` now (raising SourceError) and iterate its frames in order, none dropped.

    For files ``t`` is ``file_start_t`` (0 when None) plus the stream position, and ``mono`` the
    stream position. ``target_fps`` keeps at most that many frames per second of stream time. A
    live source ends at its first failed read; use ``FrameSource`` to reconnect.
    """
    cap = open_capture(spec, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    gate = RateGate(target_fps) if target_fps is not None else None
    return FrameReader(spec, cap, gate=gate, time_base=file_start_t or 0.0)
