from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.cli import main
from agent.vision.models import load_manifest


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_check_config_names_every_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[camera]\ntarget_fps = -3\n[camera.lines.entrance]\na = [1]\nb = [2, 3]\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "camera -> target_fps" in err
    assert "camera -> lines -> entrance -> a: must be two numbers" in err


def test_check_config_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[camera.lines.entrance]\na = [0.1, 0.5]\nb = [0.9, 0.5]\n")
    assert main(["check-config", str(path)]) == 0
    assert "ok (1 line(s)" in capsys.readouterr().out


def test_missing_video_exits_with_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["count", str(tmp_path / "absent.avi"), "--line", "a=0,0,10,10"]) == 2
    assert "absent.avi" in capsys.readouterr().err


def test_a_file_that_is_not_a_video_exits_with_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.avi"
    path.write_bytes(b"this is not a video" * 100)
    assert main(["count", str(path), "--line", "a=0,0,10,10"]) == 2
    assert "notes.avi" in capsys.readouterr().err


def test_a_model_not_on_the_device_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    video = tmp_path / "v.avi"
    video.write_bytes(b"x")
    assert main(["count", str(video), "--model", "yolox-nano"]) == 2
    assert "yolox-nano" in capsys.readouterr().err


@pytest.mark.integration
def test_count_json_on_the_sample_clip(vtest_path: Path) -> None:
    result = run_cli(
        "count",
        str(vtest_path),
        "--line",
        "middle=60,330,700,330",
        "--zone",
        "centre=200,250;560,250;560,450;200,450",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"source", "frames", "seconds", "model", "lines", "zones"}
    assert report["frames"] == 795
    assert set(report["model"]) == {"name", "sha256"}
    assert len(report["model"]["sha256"]) == 64
    assert set(report["lines"]["middle"]) == {"in", "out"}
    assert report["lines"]["middle"]["in"] + report["lines"]["middle"]["out"] > 0
    zone = report["zones"]["centre"]
    assert len(zone["per_frame"]) == 795
    assert zone["max"] == max(zone["per_frame"]) > 0
    assert zone["mean"] == pytest.approx(sum(zone["per_frame"]) / 795, abs=1e-3)


@pytest.mark.integration
def test_models_fetch_refuses_a_file_that_is_not_the_pinned_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file of the release's name and size but other bytes is not the release file: refused by its
    sha256, nothing left behind."""
    release = load_manifest()["yolox-nano"]
    served = tmp_path / "served"
    served.mkdir()
    (served / release.file).write_bytes(bytes(release.size))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{release.file}"
        code = main(["models", "fetch", "yolox-nano", "--url", url, "--state-dir", str(tmp_path / "state")])
    finally:
        server.shutdown()
    assert code == 2
    err = capsys.readouterr().err
    assert "yolox-nano" in err
    assert "sha256" in err
    models_dir = tmp_path / "state" / "models"
    leftovers = list(models_dir.iterdir()) if models_dir.exists() else []
    assert leftovers == []
