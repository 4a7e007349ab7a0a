"""The running agent as systemd sees it, through a real notify socket.

READY=1 only after the first frame is counted; the watchdog is fed from the frame loop and stops
when that loop stalls; an in-process restart sends no STOPPING=1; a required component past its
restart budget ends the agent non-zero; SIGHUP reloads a valid config and refuses an invalid one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from runtime_fixtures import agent_toml, coupon_clip

from agent.config import load_config
from agent.coupons.token import Coupon, issue_token, new_serial
from agent.fleet.active_model import read_active
from agent.runtime.model_swap import make_detector
from agent.runtime.run import Runtime, run_agent
from agent.vision.pipeline import FrameResult

pytestmark = pytest.mark.integration


class NotifySocket:
    """A unix datagram socket standing in for systemd; records every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self.on_message: Callable[[str], None] = lambda text: None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                text = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.on_message(text)
            self.messages.append((time.monotonic(), text))

    def lines(self) -> list[str]:
        return [line for _, text in self.messages for line in text.splitlines()]

    def times_of(self, line: str) -> list[float]:
        return [t for t, text in self.messages if line in text.splitlines()]

    def wait_for(self, line: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.lines():
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # pinged every 0.1 s at most
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()


def config_file(tmp_path: Path, source: Path | str, extra: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(tmp_path / "state", source, extra))
    return path


def run_in_process(path: Path, **kwargs: object) -> int:
    return run_agent(load_config(path), threading.Event(), config_path=path, **kwargs)  # type: ignore[arg-type]


def test_ready_comes_after_the_first_frame_and_stopping_only_at_the_end(
    tmp_path: Path, notify: NotifySocket, synthetic_clip: Callable[..., Path]
) -> None:
    results: list[FrameResult] = []
    frames_at_ready: list[int] = []
    notify.on_message = lambda text: frames_at_ready.append(len(results)) if "READY=1" in text else None
    code = run_in_process(config_file(tmp_path, synthetic_clip(30)), on_result=results.append)
    assert code == 0
    assert frames_at_ready and frames_at_ready[0] >= 1
    lines = notify.lines()
    assert lines.count("READY=1") == 1
    assert lines.count("STOPPING=1") == 1
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    assert "WATCHDOG=1" in lines


def test_a_camera_that_never_delivers_ends_the_agent_non_zero_without_ready(
    tmp_path: Path, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    path = config_file(tmp_path, f"rtsp://127.0.0.1:{port}/stream", "")
    path.write_text(path.read_text().replace("realtime = true", "realtime = true\nstart_timeout_s = 2"))
    with caplog.at_level(logging.ERROR):
        code = run_in_process(path)
    assert code == 1
    assert "READY=1" not in notify.lines()
    assert any("delivered no frame within 2 s (camera.start_timeout_s)" in r.getMessage() for r in caplog.records)


def test_the_watchdog_stops_while_the_frame_loop_stalls_and_resumes_after(
    tmp_path: Path, notify: NotifySocket, synthetic_clip: Callable[..., Path]
) -> None:
    stall: list[float] = []

    def on_result(result: FrameResult) -> None:
        if result.index == 20:
            stall.append(time.monotonic())
            time.sleep(1.5)  # inference stuck
            stall.append(time.monotonic())

    assert run_in_process(config_file(tmp_path, synthetic_clip(40)), on_result=on_result) == 0
    pings = notify.times_of("WATCHDOG=1")
    began, ended = stall
    assert ended - began >= 1.4
    assert not [t for t in pings if began + 0.05 < t < ended - 0.05]  # none while the loop was stuck
    assert [t for t in pings if t < began]
    assert [t for t in pings if t > ended]


def test_an_in_process_restart_sends_no_stopping(
    tmp_path: Path, notify: NotifySocket, synthetic_clip: Callable[..., Path]
) -> None:
    failed = []

    def on_result(result: FrameResult) -> None:
        if result.index == 10 and not failed:
            failed.append(time.monotonic())
            raise RuntimeError("inference crashed")

    path = config_file(tmp_path, synthetic_clip(30), "restart_backoff_s = 0.1")
    assert run_in_process(path, on_result=on_result) == 0
    assert failed
    stopping = notify.times_of("STOPPING=1")
    assert len(stopping) == 1
    watchdog_after_restart = [t for t in notify.times_of("WATCHDOG=1") if t > failed[0]]
    assert watchdog_after_restart and stopping[0] > max(watchdog_after_restart)  # only at the real end
    status = read_status_doc(tmp_path / "state" / "agent.db")
    [counting] = [c for c in status["components"] if c["name"] == "counting"]
    assert (counting["restarts"], counting["failures"]) == (1, 1)
    assert "inference crashed" in counting["last_error"]


def test_a_required_component_past_its_budget_ends_the_agent_non_zero(
    tmp_path: Path, notify: NotifySocket, synthetic_clip: Callable[..., Path]
) -> None:
    def on_result(result: FrameResult) -> None:
        raise RuntimeError("model output is garbage")

    path = config_file(tmp_path, synthetic_clip(30), "max_restarts = 2\nrestart_backoff_s = 0.05")
    assert run_in_process(path, on_result=on_result) == 1
    lines = notify.lines()
    assert "READY=1" not in lines
    assert lines.count("STOPPING=1") == 1
    status = read_status_doc(tmp_path / "state" / "agent.db")
    [counting] = [c for c in status["components"] if c["name"] == "counting"]
    assert counting["failures"] == 3
    assert status["state"] == "stopped"


def read_status_doc(db_path: Path) -> dict:
    with sqlite3.connect(db_path) as conn:
        [(doc,)] = conn.execute("SELECT doc FROM status WHERE key = 'agent'").fetchall()
    return json.loads(doc)


def status_json(config: Path) -> dict:
    db = config.parent / "state" / "agent.db"
    done = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def wait_until(ready: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.1)
    return ready()


def test_sighup_applies_a_valid_config_and_keeps_the_old_one_on_a_bad_file(
    tmp_path: Path, synthetic_clip: Callable[..., Path]
) -> None:
    """The service as systemd runs it: a subprocess, a notify socket, SIGHUP, `retail-agent status`."""
    clip = synthetic_clip(600)  # a minute at its native rate
    path = config_file(tmp_path, clip)
    sock = NotifySocket(tmp_path / "notify-sub")
    log = tmp_path / "agent.log"
    env = {**os.environ, "NOTIFY_SOCKET": sock.path}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(path)], env=env, stderr=out, stdout=out
        )
    try:
        assert sock.wait_for("READY=1"), log.read_text()[-3000:]
        assert wait_until(lambda: status_json(path)["running"]), log.read_text()[-3000:]
        before = status_json(path)["status"]
        assert {c["name"]: c["state"] for c in before["components"]}["counting"] == "running"

        path.write_text(path.read_text() + "\n[camera.lines.exit]\na = [0.2, 0.1]\nb = [0.2, 0.9]\n")
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: status_json(path)["status"]["config_version"] != before["config_version"])
        assert wait_until(lambda: "config reloaded: camera changed" in log.read_text())
        applied = status_json(path)["status"]["config_version"]
        assert sock.wait_for("RELOADING=1")

        good = path.read_text()
        path.write_text(good + "\n[camera.lines.broken]\na = [1]\nb = [0, 0]\n")
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "camera -> lines -> broken -> a" in log.read_text()), log.read_text()[-3000:]
        assert "the running config stays in force" in log.read_text()
        time.sleep(1.5)
        after = status_json(path)
        assert after["running"]
        assert after["status"]["config_version"] == applied
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
        assert sock.wait_for("STOPPING=1", 5)
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sock.close()
    with sqlite3.connect(tmp_path / "state" / "agent.db") as conn:
        lines = {row[0] for row in conn.execute("SELECT DISTINCT line FROM line_buckets")}
    assert lines == {"door", "exit"}  # counting went on with the reloaded lines


def test_the_running_agent_scans_redeems_aggregates_and_reports_every_component(
    tmp_path: Path, notify: NotifySocket, synthetic_clip: Callable[..., Path]
) -> None:
    """The production wiring: run_agent starts scanning, aggregation and retention beside counting."""
    key = Ed25519PrivateKey.generate()
    now = int(time.time())
    coupon = Coupon(1, 4, 77, new_serial(), now - 60, now + 3600, 5, 12)
    scan = coupon_clip(tmp_path / "counter.avi", issue_token(coupon, key))
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    extra = f'\n[coupons]\nstore = 12\nscan_source = "{scan}"\nscan_fps = 10\n[coupons.issuer_keys]\n"4" = "{public}"\n'
    path = config_file(tmp_path, synthetic_clip(80))
    path.write_text(path.read_text() + extra)
    assert run_in_process(path) == 0
    with sqlite3.connect(tmp_path / "state" / "agent.db") as conn:
        redeemed = conn.execute("SELECT serial, source FROM redemptions").fetchall()
        kinds = {row[0] for row in conn.execute("SELECT DISTINCT kind FROM outbox")}
        frames = conn.execute("SELECT SUM(frames) FROM zone_buckets").fetchone()[0]
    assert redeemed == [(coupon.serial_hex, "scanner")]
    assert "ledger" in kinds
    assert frames == 80
    status = read_status_doc(tmp_path / "state" / "agent.db")
    names = {c["name"]: c for c in status["components"]}
    assert set(names) == {"counting", "aggregation", "retention", "scanning"}
    assert names["counting"]["state"] == "finished"
    assert all(c["failures"] == 0 for c in names.values())


def test_a_reload_that_changes_only_the_detector_swaps_it_without_restarting_counting(
    tmp_path: Path, notify: NotifySocket, synthetic_clip: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = config_file(tmp_path, synthetic_clip(60))
    holder: list[Runtime] = []

    def on_result(result: FrameResult) -> None:
        if result.index == 15:
            path.write_text(path.read_text() + "\n[detector]\nthreads = 2\n")
            holder[0].reload_requested.set()
        if result.index == 30:
            changed = path.read_text().replace('id = "kiosk-1"', 'id = "kiosk-9"')
            path.write_text(changed)
            holder[0].reload_requested.set()

    runtime = Runtime(load_config(path), threading.Event(), config_path=path, on_result=on_result)
    holder.append(runtime)
    with caplog.at_level(logging.INFO):
        assert runtime.run() == 0
    text = caplog.text
    assert "config reloaded: detector changed" in text
    assert "detector replaced: ssdlite-pedestrian -> ssdlite-pedestrian" in text
    assert "[device] and storage.database cannot change while the agent runs" in text
    assert runtime.config.detector.threads == 2
    assert runtime.config.device.id == "kiosk-1"
    status = read_status_doc(tmp_path / "state" / "agent.db")
    [counting] = [c for c in status["components"] if c["name"] == "counting"]
    assert counting["restarts"] == 0
    with sqlite3.connect(tmp_path / "state" / "agent.db") as conn:
        [(counted,)] = conn.execute("SELECT SUM(frames) FROM zone_buckets").fetchall()
    # A live source drops its oldest frame when the loop falls behind (a loaded machine, the swap);
    # every frame is either counted or reported dropped, none vanishes.
    assert counted + status["dropped_frames"] == 60
    assert counted >= 30


def test_a_detector_reload_waits_for_the_model_health_check_to_end(
    tmp_path: Path, synthetic_clip: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = config_file(tmp_path, synthetic_clip(10))
    runtime = Runtime(load_config(path), threading.Event(), config_path=path)
    before = runtime.models.current
    candidate = make_detector(runtime.config, before.spec)
    runtime.models._candidate = candidate
    runtime.models.swap_to_candidate()  # the health check of a delivered model is under way
    path.write_text(path.read_text() + "\n[detector]\nthreads = 2\n")
    runtime.reload_requested.set()
    with caplog.at_level(logging.INFO):
        runtime._maybe_reload()
        assert runtime.models.current is candidate and runtime.config.detector.threads == 1
        assert "put off until the model health check ends" in caplog.text
        runtime._maybe_reload()  # still under check: nothing is applied
        assert runtime.config.detector.threads == 1

        runtime.models.keep_candidate("job-1")
        record = read_active(runtime.config.device.state_dir)
        assert record is not None and record.job_id == "job-1" and record.sha256 == candidate.spec.sha256
        runtime._maybe_reload()  # the check ended: the reload put off is applied now
    assert runtime.config.detector.threads == 2
    assert runtime.models.current is not candidate and runtime.models.current.threads == 2
    assert "config reloaded: detector changed" in caplog.text
