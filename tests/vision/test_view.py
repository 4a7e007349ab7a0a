"""``retail-agent view`` on a frame of the sample clip with the demo's lines: the real detector,
the drawn geometry, a private PNG and an audit record."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import cv2
import pytest

from agent.cli import main
from agent.config import load_config
from agent.counting.geometry import Point, side
from agent.storage.audit import entries
from agent.storage.database import open_readonly
from agent.vision.view import make_view

pytestmark = pytest.mark.integration
FRAME = 100


def _demo_config(tmp_path: Path, video: Path) -> Path:
    """The demo's config (its lines and zone for the sample clip) on the sample, state in tmp_path."""
    demo = resources.files("agent").joinpath("demo.toml").read_text(encoding="utf-8")
    demo = demo.replace('store = "demo"\n', f'store = "demo"\nstate_dir = {str(tmp_path)!r}\n', 1)
    demo = demo.replace("[camera]\n", f"[camera]\nsource = {str(video)!r}\n", 1)
    config = tmp_path / "agent.toml"
    config.write_text(demo)
    return config


def test_view_draws_the_demo_lines_and_the_people_of_a_sample_frame(tmp_path: Path, vtest_path: Path) -> None:
    config = load_config(_demo_config(tmp_path, vtest_path))
    result = make_view(config, tmp_path / "view.png", skip=FRAME)
    overlay = result.overlay
    assert (overlay.width, overlay.height) == (768, 576)
    demo = tomllib.loads(resources.files("agent").joinpath("demo.toml").read_text(encoding="utf-8"))
    assert [line.name for line in overlay.lines] == list(demo["camera"]["lines"])
    for line in overlay.lines:
        spec = demo["camera"]["lines"][line.name]
        assert (line.a, line.b) == (Point(*spec["a"]), Point(*spec["b"]))
        assert side(line.a, line.b, line.arrow_in.end) == 1
    # The junction line is drawn top to bottom, so walking left is in.
    junction = next(line for line in overlay.lines if line.name == "junction_east")
    assert junction.arrow_in.end.x < junction.arrow_in.start.x
    assert [zone.name for zone in overlay.zones] == ["walkway_centre"]
    assert len(overlay.people) >= 3, "the sample's busy walkway has several people in view"
    for person in overlay.people:
        x1, y1, x2, y2 = person.box
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
    image = cv2.imread(str(result.path))
    assert image is not None and image.shape == (576, 768, 3)
    assert result.path.stat().st_mode & 0o777 == 0o600


def test_the_view_command_writes_the_image_and_audits_it(
    tmp_path: Path, vtest_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _demo_config(tmp_path, vtest_path)
    out = tmp_path / "mount check.png"
    assert main(["view", "--config", str(config), "--out", str(out), "--actor", "operator:ops-7"]) == 0
    assert "person(s) detected, 3 line(s), 1 zone(s)" in capsys.readouterr().out
    assert out.is_file()
    db = open_readonly(tmp_path / "agent.db")
    try:
        (entry,) = entries(db, action="camera_view")
    finally:
        db.close()
    assert (entry.role, entry.actor_id, entry.subject) == ("operator", "ops-7", "demo")
    assert entry.detail["file"] == "mount_check.png"
    assert int(entry.detail["people"] or 0) >= 1


def test_a_camera_that_cannot_be_opened_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[device]\nstate_dir = {str(tmp_path)!r}\n[camera]\nsource = "rtsp://127.0.0.1:9/none"\n')
    assert main(["view", "--config", str(config), "--out", str(tmp_path / "v.png")]) == 2
    err = capsys.readouterr().err
    assert "retail-agent view: cannot open video stream" in err
    assert "Traceback" not in err
    assert not (tmp_path / "v.png").exists()
