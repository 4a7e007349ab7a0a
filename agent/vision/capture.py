"""A live reader: its own thread, a queue that drops the oldest frame, pacing and reconnects."""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import TracebackType

from agent.vision.backoff import Backoff, RateGate
from agent.vision.source import (
    Capture,
    CorruptLog,
    Counters,
    Frame,
    FrameClock,
    FrameReader,
    SourceError,
    SourceSpec,
    SourceStats,
    open_capture,
)

logger = logging.getLogger(__name__)


class FrameSource:
    """Reads a source on its own thread into a queue that drops the oldest frame when full.

    Capture never waits for the consumer: a full queue loses its oldest frame (``dropped``).
    ``target_fps`` hands out at most that rate; the rest are ``skipped``. A file in ``realtime``
    mode plays at its native rate like a camera; otherwise it is read as fast as it decodes. A
    file ends the source at its end unless ``loop``; a live source that fails is reopened with
    ``backoff`` until stopped, counting ``reconnects``. Setting ``stop`` (shared with the rest of
    the agent) or calling ``stop()`` ends the thread. ``clock`` gives live frames their wall and
    monotonic times (see ``Frame``).
    """

    def __init__(
        self,
        spec: SourceSpec,
        *,
        queue_size: int = 2,
        target_fps: float | None = None,
        realtime: bool = True,
        loop: bool = False,
        file_start_t: float | None = None,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
        reconnect_max_s: float | None = None,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        rng: random.Random | None = None,
        opener: Callable[[SourceSpec], Capture] | None = None,
        clock: FrameClock | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if target_fps is not None and not target_fps > 0:
            raise ValueError(f"target_fps must be positive, got {target_fps}")
        self.spec = spec
        self.target_fps = target_fps
        self.realtime = realtime
        self.loop = loop
        self.file_start_t = file_start_t or 0.0
        backoff = backoff or Backoff()
        if reconnect_max_s is not None:
            backoff = replace(backoff, initial_s=min(backoff.initial_s, reconnect_max_s), max_s=reconnect_max_s)
        self.backoff = backoff
        self._rng = rng or random.Random()
        self._opener: Callable[[SourceSpec], Capture] = opener or (
            lambda s: open_capture(s, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
        )
        self._clock = clock or FrameClock()
        self._external_stop = stop
        self._halt = threading.Event()
        self._cond = threading.Condition()
        self._queue: collections.deque[Frame] = collections.deque(maxlen=queue_size)
        self._counters = Counters(self._cond)
        self._corrupt_log = CorruptLog(spec.label)
        self._thread: threading.Thread | None = None
        self._done = False
        self._first_cap: Capture | None = None
        self._pace_anchor: tuple[float, float] | None = None
        self._gate = RateGate(target_fps) if target_fps is not None else None
        self.error: Exception | None = None

    @property
    def stats(self) -> SourceStats:
        return self._counters.snapshot()

    @property
    def finished(self) -> bool:
        """True once capture has ended for good and every queued frame was handed out.

        ``error`` then holds the exception if capture ended by an unexpected error.
        """
        with self._cond:
            return self._done and not self._queue

    def start(self) -> None:
        """Start capturing. A file is opened here, so a bad file raises SourceError at once."""
        if self._thread is not None:
            raise RuntimeError("the frame source was already started")
        if not self.spec.is_live:
            self._first_cap = self._opener(self.spec)
        self._thread = threading.Thread(target=self._run, name=f"capture {self.spec.label}", daemon=True)
        self._thread.start()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest queued frame, waiting up to ``timeout`` s; None on timeout or when finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self._done:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            self._counters.delivered += 1
            return self._queue.popleft()

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the source finishes."""
        while True:
            frame = self.get(timeout=0.5)
            if frame is not None:
                yield frame
            elif self.finished:
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop capturing and wait up to ``timeout`` s for the capture thread to end."""
        self._halt.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s: capture thread still busy after %.1f s", self.spec.label, timeout)

    def __enter__(self) -> FrameSource:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _stopping(self) -> bool:
        return self._halt.is_set() or (self._external_stop is not None and self._external_stop.is_set())

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless stopped first; False if stopped."""
        deadline = time.monotonic() + seconds
        while not self._stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            # The shared stop event cannot wake this wait, so look at it every 50 ms.
            self._halt.wait(min(remaining, 0.05) if self._external_stop is not None else remaining)
        return False

    def _run(self) -> None:
        try:
            if self.spec.is_live:
                self._run_live()
            else:
                self._run_file()
        except Exception as exc:
            self.error = exc
            logger.exception("%s: capture stopped by an unexpected error", self.spec.label)
        finally:
            self._corrupt_log.flush()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _run_file(self) -> None:
        cap, self._first_cap = self._first_cap, None
        index, time_base = 0, self.file_start_t
        while cap is not None:
            reader = self._pump(cap, index, time_base, time_base - self.file_start_t)
            if self._stopping():
                return
            logger.info("%s: end of file after %d frames", self.spec.label, reader.grabbed)
            if not self.loop or reader.grabbed == 0:
                return
            index = reader.next_index
            time_base = (reader.last_t if reader.last_t is not None else time_base) + reader.period
            try:
                cap = self._opener(self.spec)
            except SourceError as exc:
                logger.error("%s", exc)
                return

    def _run_live(self) -> None:
        attempt, tries, index = 0, 0, 0
        while not self._stopping():
            if tries:
                with self._cond:
                    self._counters.reconnects += 1
            tries += 1
            try:
                cap = self._opener(self.spec)
            except SourceError as exc:
                delay = self.backoff.sample(attempt, self._rng)
                attempt += 1
                logger.warning("%s; retrying in %.1f s", exc, delay)
                self._sleep(delay)
                continue
            logger.info("%s: connected", self.spec.label)
            connected_at = time.monotonic()
            reader = self._pump(cap, index, 0.0, 0.0)
            index = reader.next_index
            if self._stopping():
                return
            if time.monotonic() - connected_at >= self.backoff.reset_after_s:
                attempt = 0
            delay = self.backoff.sample(attempt, self._rng)
            attempt += 1
            logger.warning(
                "%s: stream lost after %d frames; reconnecting in %.1f s",
                self.spec.label,
                reader.grabbed,
                delay,
            )
            self._sleep(delay)

    def _pump(self, cap: Capture, first_index: int, time_base: float, mono_base: float) -> FrameReader:
        """Move frames from one open capture to the queue until it ends or the source stops."""
        reader = FrameReader(
            self.spec,
            cap,
            gate=self._gate,
            first_index=first_index,
            time_base=time_base,
            mono_base=mono_base,
            counters=self._counters,
            corrupt_log=self._corrupt_log,
            clock=self._clock,
        )
        try:
            while not self._stopping():
                frame = reader.read()
                if reader.ended:
                    break
                if frame is None:
                    continue
                if self.realtime and not self.spec.is_live:
                    self._pace(frame.mono)
                self._push(frame)
        finally:
            reader.close()
        return reader

    def _pace(self, t: float) -> None:
        """Hold a file frame until its time comes, as if a camera were delivering it."""
        now = time.monotonic()
        if self._pace_anchor is None:
            self._pace_anchor = (now, t)
            return
        anchor_mono, anchor_t = self._pace_anchor
        delay = anchor_mono + (t - anchor_t) - now
        if delay > 0:
            self._sleep(delay)
        elif delay < -1.0:
            self._pace_anchor = (now, t)  # fell behind: carry on from here instead of rushing

    def _push(self, frame: Frame) -> None:
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self._counters.dropped += 1
            self._queue.append(frame)
            self._cond.notify()
