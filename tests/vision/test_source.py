"""Video sources: parsing, opening, reading files, the threaded reader, reconnects."""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent.vision.backoff import Backoff
from agent.vision.capture import FrameSource
from agent.vision.source import (
    Frame,
    FrameClock,
    SourceError,
    SourceSpec,
    open_capture,
    parse_source,
    read_frames,
)

VTEST_FRAMES = 795
FAST_RETRY = Backoff(initial_s=0.02, max_s=0.1, jitter=0.2)


def _image(value: int = 0, shape: tuple[int, ...] = (6, 8, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


class FakeCapture:
    """A capture yielding given images (None means the decoder gave nothing) at ``fps``."""

    def __init__(self, images: list[Any], fps: float = 10.0, grab_delay_s: float = 0.0) -> None:
        self.images = images
        self.fps = fps
        self.grab_delay_s = grab_delay_s
        self.position = 0
        self.released = False

    def grab(self) -> bool:
        if self.grab_delay_s:
            time.sleep(self.grab_delay_s)
        if self.position >= len(self.images):
            return False
        self.position += 1
        return True

    def retrieve(self) -> tuple[bool, Any]:
        image = self.images[self.position - 1]
        return image is not None, image

    def get(self, prop_id: int) -> float:
        if prop_id == cv2.CAP_PROP_FPS:
            return self.fps
        if prop_id == cv2.CAP_PROP_POS_MSEC:
            return (self.position - 1) * 1000.0 / self.fps
        return 0.0

    def release(self) -> None:
        self.released = True


def _opener(make: Callable[[], FakeCapture]) -> tuple[Callable[[SourceSpec], FakeCapture], list[FakeCapture]]:
    opened: list[FakeCapture] = []

    def open_fake(spec: SourceSpec) -> FakeCapture:
        cap = make()
        opened.append(cap)
        return cap

    return open_fake, opened


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _drain(source: FrameSource, timeout: float = 10.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = source.get(timeout=0.5)
        if frame is not None:
            frames.append(frame)
        elif source.finished:
            return frames
    raise AssertionError("source did not finish in time")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _digest(image: np.ndarray) -> str:
    return hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()


def _summaries(frames: Iterable[Frame]) -> list[tuple[int, float, str]]:
    """Index, time and image digest of each frame, so whole clips are never held in memory."""
    return [(f.index, f.t, _digest(f.image)) for f in frames]


@pytest.fixture(scope="module")
def clean_digests(vtest_path: Path) -> list[str]:
    """Digests of every frame of the clip as OpenCV decodes it directly."""
    cap = cv2.VideoCapture(str(vtest_path))
    digests = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        digests.append(_digest(image))
    cap.release()
    return digests


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "parsed"),
    [
        (0, "usb", 0),
        (2, "usb", 2),
        ("1", "usb", 1),
        (" 3 ", "usb", 3),
        ("rtsp://10.0.0.5:554/stream1", "url", "rtsp://10.0.0.5:554/stream1"),
        ("RTSP://cam/x", "url", "RTSP://cam/x"),
        ("rtsps://cam/x", "url", "rtsps://cam/x"),
        ("http://cam/video.mjpg", "url", "http://cam/video.mjpg"),
        ("https://cam/video.mjpg", "url", "https://cam/video.mjpg"),
        ("/data/clip.avi", "file", "/data/clip.avi"),
        ("clips/2024 entrance.mp4", "file", "clips/2024 entrance.mp4"),
        ("ftp://host/clip.avi", "file", "ftp://host/clip.avi"),
        ("12a", "file", "12a"),
        (Path("/data/clip.avi"), "file", "/data/clip.avi"),
    ],
)
def test_parse_source_tells_usb_indices_urls_and_files_apart(value: Any, kind: str, parsed: Any) -> None:
    spec = parse_source(value)
    assert (spec.kind, spec.value) == (kind, parsed)
    assert spec.is_live == (kind != "file")


@pytest.mark.parametrize("value", ["", "   ", -1, True])
def test_parse_source_rejects_empty_negative_and_boolean_values(value: Any) -> None:
    with pytest.raises(SourceError):
        parse_source(value)


def test_spec_refuses_a_kind_that_does_not_match_its_value() -> None:
    with pytest.raises(ValueError, match="USB"):
        SourceSpec("usb", "0")
    with pytest.raises(ValueError, match="file"):
        SourceSpec("file", 3)


def test_label_hides_the_stream_password_but_keeps_user_and_host() -> None:
    spec = parse_source("rtsp://admin:s3cret@10.0.0.5:554/stream1")
    assert spec.label == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert "s3cret" not in str(spec)
    assert parse_source(4).label == "usb:4"
    assert parse_source("/data/a.avi").label == "/data/a.avi"


def test_frame_refuses_an_image_that_is_not_bgr_uint8() -> None:
    with pytest.raises(ValueError, match="BGR"):
        Frame(0, 0.0, np.zeros((4, 4), np.uint8), 0.0)
    with pytest.raises(ValueError, match="BGR"):
        Frame(0, 0.0, np.zeros((4, 4, 3), np.float32), 0.0)


# --- opening ---------------------------------------------------------------------------------


def test_missing_file_raises_source_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avi"
    with pytest.raises(SourceError, match=r"cannot open video file .*nope\.avi: no such file"):
        open_capture(parse_source(str(missing)))


def test_file_of_garbage_bytes_raises_source_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 64_000, dtype=np.uint8).tobytes())
    started = time.monotonic()
    with pytest.raises(SourceError, match="not a video"):
        read_frames(parse_source(str(garbage)))
    assert time.monotonic() - started < 5.0


def test_directory_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        open_capture(parse_source(str(tmp_path)))


def test_usb_index_without_a_camera_raises_source_error_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="USB camera 63"):
        open_capture(parse_source(63))
    assert time.monotonic() - started < 5.0


def test_stream_that_cannot_connect_raises_source_error_within_the_open_timeout() -> None:
    spec = parse_source(f"rtsp://127.0.0.1:{_closed_port()}/x")
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot open video stream rtsp://127\.0\.0\.1"):
        open_capture(spec, open_timeout_s=2.0)
    assert time.monotonic() - started < 5.0


def test_stream_that_accepts_but_never_answers_gives_up_after_the_open_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        spec = parse_source(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x")
        started = time.monotonic()
        with pytest.raises(SourceError, match="timed out after 1 s"):
            open_capture(spec, open_timeout_s=1.0, read_timeout_s=1.0)
        assert time.monotonic() - started < 4.0


def test_frame_source_over_a_missing_file_raises_on_start(tmp_path: Path) -> None:
    source = FrameSource(parse_source(str(tmp_path / "gone.mp4")))
    with pytest.raises(SourceError, match="no such file"):
        source.start()


# --- reading files synchronously ----------------------------------------------------------------


@pytest.mark.integration
def test_reads_every_frame_of_the_clip_with_stream_indices_and_rising_times(
    vtest_path: Path, clean_digests: list[str]
) -> None:
    with read_frames(parse_source(str(vtest_path)), file_start_t=1000.0) as frames:
        first = next(frames)
        got = [(first.index, first.t, _digest(first.image)), *_summaries(frames)]
        stats = frames.stats
    assert [index for index, _, _ in got] == list(range(VTEST_FRAMES))
    times = [t for _, t, _ in got]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times[0] == pytest.approx(1000.0)
    assert times[-1] == pytest.approx(1000.0 + (VTEST_FRAMES - 1) / 10.0)
    assert first.image.shape == (576, 768, 3)
    assert [digest for _, _, digest in got] == clean_digests
    assert (stats.read, stats.delivered, stats.corrupt) == (VTEST_FRAMES, VTEST_FRAMES, 0)


@pytest.mark.integration
def test_target_fps_keeps_every_fourth_frame_of_the_ten_fps_clip(vtest_path: Path) -> None:
    with read_frames(parse_source(str(vtest_path)), target_fps=2.5) as frames:
        indices = [f.index for f in frames]
        stats = frames.stats
    assert indices == list(range(0, VTEST_FRAMES, 4))
    assert stats.skipped == VTEST_FRAMES - len(indices)


@pytest.mark.integration
def test_truncated_file_yields_its_first_frames_then_ends_cleanly(
    vtest_path: Path, tmp_path: Path, clean_digests: list[str]
) -> None:
    data = vtest_path.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.4)])
    with read_frames(parse_source(str(truncated))) as frames:
        got = _summaries(frames)
    assert 200 < len(got) < VTEST_FRAMES
    assert [index for index, _, _ in got] == list(range(len(got)))
    # Every frame before the cut decodes exactly as in the full file.
    assert [digest for _, _, digest in got[:-1]] == clean_digests[: len(got) - 1]


@pytest.mark.integration
def test_file_damaged_in_the_middle_yields_frames_before_and_after_the_damage(
    vtest_path: Path, tmp_path: Path, clean_digests: list[str]
) -> None:
    data = bytearray(vtest_path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200_000] = np.random.default_rng(7).integers(0, 256, 200_000, np.uint8).tobytes()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))

    with read_frames(parse_source(str(damaged))) as frames:
        got = _summaries(frames)
        stats = frames.stats

    digests = [digest for _, _, digest in got]
    # OpenCV (FFmpeg's AVI demuxer) loses the frames whose packets were overwritten, conceals
    # errors in the next few, and then decodes the rest of the file exactly. Decoding never fails
    # outright, so nothing counts as corrupt; the frames simply go missing.
    assert 300 < len(got) < VTEST_FRAMES
    assert digests[:300] == clean_digests[:300]
    assert digests[-50:] == clean_digests[-50:]
    assert stats.read == stats.delivered + stats.corrupt == len(got)
    # The demuxer numbers frames by packet, so positions stay consecutive across the gap:
    # frames after the damage are stamped earlier than their true time.
    assert [index for index, _, _ in got] == list(range(len(got)))
    times = [t for _, t, _ in got]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times[-1] == pytest.approx((len(got) - 1) / 10.0)


def test_corrupt_frames_are_skipped_and_counted_and_keep_their_stream_numbers() -> None:
    images = [
        _image(0),
        None,  # decoder gave nothing
        _image(2, (6, 8)),  # grey, not BGR
        _image(3, (3, 4, 3)),  # size changed mid-stream
        np.zeros((6, 8, 3), np.float32),  # wrong type
        _image(5),
    ]
    open_fake, _ = _opener(lambda: FakeCapture(images))
    source = FrameSource(parse_source("clip.avi"), realtime=False, queue_size=10, opener=open_fake)
    source.start()
    frames = _drain(source)
    assert [f.index for f in frames] == [0, 5]
    assert [f.t for f in frames] == pytest.approx([0.0, 0.5])
    assert source.stats.corrupt == 4
    assert source.stats.read == 6


def test_repeated_corrupt_frames_give_one_warning_with_a_count_not_one_per_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    images = [_image(1)] + [None] * 30 + [_image(2)]
    with caplog.at_level(logging.WARNING, logger="agent.vision.source"):
        source = FrameSource(
            parse_source("clip.avi"),
            realtime=False,
            queue_size=10,
            opener=_opener(lambda: FakeCapture(images))[0],
        )
        source.start()
        _drain(source)
    warnings = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warnings) == 2
    assert "skipped 1 corrupt frame(s)" in warnings[0]
    assert "skipped 29 more corrupt frame(s)" in warnings[1]
    assert source.stats.corrupt == 30


# --- the threaded reader -------------------------------------------------------------------


def test_full_queue_drops_the_oldest_frames_and_capture_never_waits_for_the_consumer() -> None:
    count = 50
    open_fake, opened = _opener(lambda: FakeCapture([_image(i) for i in range(count)]))
    source = FrameSource(parse_source("clip.avi"), realtime=False, queue_size=2, opener=open_fake)
    source.start()
    # Nobody consumes; capture must still get through the whole file.
    assert _wait_for(lambda: source.stats.dropped == count - 2)
    assert source.stats.read == count
    assert opened[0].released
    newest = [source.get(timeout=1.0), source.get(timeout=1.0)]
    assert [f.index for f in newest if f is not None] == [count - 2, count - 1]
    assert source.get(timeout=0.1) is None
    assert source.finished
    source.stop()


@pytest.mark.integration
def test_slow_consumer_of_the_clip_gets_the_newest_frames_while_capture_runs_ahead(vtest_path: Path) -> None:
    source = FrameSource(parse_source(str(vtest_path)), realtime=False, queue_size=2)
    source.start()
    got: list[int] = []
    started = time.monotonic()
    while True:
        frame = source.get(timeout=1.0)
        if frame is None:
            if source.finished:
                break
            continue
        got.append(frame.index)
        time.sleep(0.02)  # a consumer far slower than decoding
    elapsed = time.monotonic() - started
    stats = source.stats
    source.stop()
    assert got[-1] == VTEST_FRAMES - 1
    assert got == sorted(got)
    assert stats.dropped > 0
    assert stats.read == VTEST_FRAMES
    assert stats.read == stats.delivered + stats.dropped
    # Consuming every frame would take 795 * 20 ms = 16 s; capture did not wait for that.
    assert elapsed < 10.0
    assert len(got) < VTEST_FRAMES / 2


@pytest.mark.integration
def test_realtime_file_is_paced_at_the_target_rate_with_exact_stream_times(vtest_path: Path) -> None:
    source = FrameSource(parse_source(str(vtest_path)), realtime=True, target_fps=5.0, queue_size=8)
    source.start()
    frames: list[Frame] = []
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        frame = source.get(timeout=0.5)
        if frame is not None:
            frames.append(frame)
    source.stop()
    # Stream times are exact: every other frame of a 10 fps clip.
    assert [f.index for f in frames] == list(range(0, 2 * len(frames), 2))
    assert [b.t - a.t for a, b in itertools.pairwise(frames)] == pytest.approx([0.2] * (len(frames) - 1))
    # Wall-clock rate: about 5 per second (1.5 s gives 8 frames counting the first), loosely.
    assert 5 <= len(frames) <= 10
    assert source.stats.skipped >= len(frames) - 2


def test_live_source_thins_frames_beyond_the_target_rate_and_counts_them_as_skipped() -> None:
    open_fake, _ = _opener(lambda: FakeCapture([_image(1)] * 10_000, grab_delay_s=0.005))
    source = FrameSource(parse_source(0), target_fps=10.0, queue_size=64, opener=open_fake)
    source.start()
    time.sleep(1.0)
    source.stop()
    stats = source.stats
    assert stats.skipped > stats.read // 2
    assert 5 <= stats.read - stats.skipped <= 15
    assert stats.dropped == 0


def test_looping_file_restarts_with_rising_indices_and_times() -> None:
    opened: list[FakeCapture] = []

    def open_three_times(spec: SourceSpec) -> FakeCapture:
        if len(opened) == 3:
            raise SourceError("cannot open video file clip.avi: no such file")
        opened.append(FakeCapture([_image(i) for i in range(3)]))
        return opened[-1]

    source = FrameSource(
        parse_source("clip.avi"),
        realtime=False,
        loop=True,
        queue_size=100,
        opener=open_three_times,
        file_start_t=50.0,
    )
    source.start()
    frames = _drain(source)
    assert [f.index for f in frames] == list(range(9))
    assert [f.t for f in frames] == pytest.approx([50.0 + i / 10 for i in range(9)])
    assert source.stats.reconnects == 0


def test_file_without_loop_ends_the_source_and_does_not_reopen() -> None:
    open_fake, opened = _opener(lambda: FakeCapture([_image(i) for i in range(3)]))
    source = FrameSource(parse_source("clip.avi"), realtime=False, queue_size=10, opener=open_fake)
    source.start()
    assert len(_drain(source)) == 3
    assert len(opened) == 1
    assert source.stats.reconnects == 0


def test_live_stream_that_fails_mid_stream_is_reopened_and_indices_keep_rising() -> None:
    open_fake, opened = _opener(lambda: FakeCapture([_image(i) for i in range(3)]))
    source = FrameSource(parse_source(0), queue_size=100, backoff=FAST_RETRY, opener=open_fake)
    source.start()
    assert _wait_for(lambda: source.stats.reconnects >= 3)
    source.stop()
    frames = _drain(source)
    indices = [f.index for f in frames]
    assert indices == list(range(len(indices)))
    assert len(indices) >= 9
    assert all(cap.released for cap in opened)


def test_live_source_that_never_connects_keeps_retrying_with_backoff_until_stopped() -> None:
    spec = parse_source(f"rtsp://127.0.0.1:{_closed_port()}/x")
    source = FrameSource(spec, backoff=FAST_RETRY, open_timeout_s=1.0, rng=random.Random(5))
    source.start()
    assert _wait_for(lambda: source.stats.reconnects >= 3, timeout=10.0)
    assert source.get(timeout=0.05) is None
    assert not source.finished
    source.stop()
    assert source.finished
    assert source.stats.read == 0


def test_retries_wait_longer_each_time_up_to_the_cap() -> None:
    attempts: list[float] = []

    def refuse(spec: SourceSpec) -> FakeCapture:
        attempts.append(time.monotonic())
        raise SourceError("camera away")

    policy = Backoff(initial_s=0.05, max_s=0.2, jitter=0.0)
    source = FrameSource(parse_source(0), backoff=policy, opener=refuse)
    source.start()
    assert _wait_for(lambda: len(attempts) >= 6, timeout=5.0)
    source.stop()
    gaps = [b - a for a, b in itertools.pairwise(attempts)][:5]
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2, 0.2, 0.2], strict=True):
        assert expected * 0.9 <= gap < expected + 0.4


def test_reconnect_max_s_caps_the_backoff() -> None:
    source = FrameSource(parse_source(0), reconnect_max_s=0.3)
    assert source.backoff.max_s == 0.3
    assert source.backoff.base(10) == 0.3


def test_shared_stop_event_ends_a_live_source_without_calling_stop() -> None:
    stop = threading.Event()
    open_fake, _ = _opener(lambda: FakeCapture([_image(1)] * 100_000, grab_delay_s=0.002))
    source = FrameSource(parse_source(0), stop=stop, opener=open_fake)
    source.start()
    assert _wait_for(lambda: source.stats.read > 5)
    stop.set()
    _drain(source, timeout=2.0)  # ends only once capture has stopped
    assert source.finished


def test_shared_stop_event_interrupts_a_backoff_wait() -> None:
    stop = threading.Event()

    def refuse(spec: SourceSpec) -> FakeCapture:
        raise SourceError("camera away")

    source = FrameSource(parse_source(0), stop=stop, backoff=Backoff(initial_s=30.0), opener=refuse)
    source.start()
    time.sleep(0.1)
    started = time.monotonic()
    stop.set()
    assert _wait_for(lambda: source.finished, timeout=2.0)
    assert time.monotonic() - started < 1.0


def test_source_as_context_manager_stops_its_thread() -> None:
    open_fake, _ = _opener(lambda: FakeCapture([_image(1)] * 100_000, grab_delay_s=0.002))
    with FrameSource(parse_source(0), opener=open_fake) as source:
        assert source.get(timeout=2.0) is not None
    _drain(source, timeout=1.0)
    assert source.finished


def test_starting_twice_is_refused() -> None:
    open_fake, _ = _opener(lambda: FakeCapture([_image(1)]))
    source = FrameSource(parse_source("clip.avi"), opener=open_fake)
    source.start()
    with pytest.raises(RuntimeError):
        source.start()
    source.stop()


def test_unexpected_capture_error_ends_the_source_and_is_kept() -> None:
    class Broken(FakeCapture):
        def grab(self) -> bool:
            raise RuntimeError("driver fell over")

    source = FrameSource(parse_source("clip.avi"), opener=lambda spec: Broken([]))
    source.start()
    assert _drain(source, timeout=2.0) == []
    assert isinstance(source.error, RuntimeError)


# --- frame times -----------------------------------------------------------------------------


class SteppedClock:
    """A wall clock set back an hour after ``step_after`` readings; a steady monotonic clock."""

    def __init__(self, step_after: int) -> None:
        self.readings = 0
        self.step_after = step_after

    def wall(self) -> float:
        self.readings += 1
        return 1_700_000_000.0 + self.readings * 0.1 - (3600.0 if self.readings > self.step_after else 0.0)

    def mono(self) -> float:
        return 50.0 + self.readings * 0.1


def test_live_frames_carry_wall_and_monotonic_time_and_only_wall_time_steps() -> None:
    clock = SteppedClock(step_after=3)
    open_fake, _ = _opener(lambda: FakeCapture([_image(i) for i in range(6)]))
    with FrameSource(
        parse_source(0), queue_size=10, opener=open_fake, clock=FrameClock(clock.wall, clock.mono)
    ) as source:
        frames = [source.get(timeout=2.0) for _ in range(6)]
    assert all(f is not None for f in frames)
    walls = [f.t for f in frames if f is not None]
    monos = [f.mono for f in frames if f is not None]
    assert walls[3] < walls[2] - 3000  # the clock was set back between frames 2 and 3
    assert monos == sorted(monos) and len(set(monos)) == 6


def test_file_frames_take_monotonic_time_from_the_stream_position() -> None:
    open_fake, _ = _opener(lambda: FakeCapture([_image(i) for i in range(4)], fps=10.0))
    source = FrameSource(parse_source("clip.avi"), realtime=False, queue_size=10, opener=open_fake, file_start_t=5000.0)
    with source:
        frames = list(source)
    assert [f.mono for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [f.t for f in frames] == pytest.approx([5000.0, 5000.1, 5000.2, 5000.3])


def test_a_frame_refuses_times_that_are_not_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        Frame(0, float("nan"), _image(1), 0.0)
