from __future__ import annotations

import os
import tempfile
from contextlib import nullcontext
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import AgentConfig, ConfigError, load_config, parse_config


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "test.toml")
    return [str(p) for p in caught.value.problems]


def test_empty_file_gives_the_embedded_defaults() -> None:
    config = parse_config({})
    assert config == AgentConfig()
    assert config.detector.model == "ssdlite-pedestrian"
    assert config.counting.hold_s >= 0


def test_a_full_config_loads_into_typed_objects(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        """
[device]
id = "kiosk-7"
state_dir = "state"

[camera]
source = "rtsp://camera.local/stream"
target_fps = 8

[camera.lines.entrance]
a = [0.1, 0.5]
b = [0.9, 0.5]
net = true

[camera.zones.till]
polygon = [[10, 10], [200, 10], [200, 120]]
queue = true

[detector]
model = "yolox-nano"
threads = 2
"""
    )
    config = load_config(path)
    assert config.device.id == "kiosk-7"
    assert config.device.state_dir == (tmp_path / "state").resolve()
    assert config.database_path == (tmp_path / "state" / "agent.db").resolve()
    assert config.camera.lines["entrance"].a == (0.1, 0.5)
    assert config.camera.lines["entrance"].net is True
    assert config.camera.zones["till"].queue is True
    assert config.detector.threads == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"camera": {"lines": {"entrance": {"a": [1], "b": [2, 3]}}}},
            "camera -> lines -> entrance -> a: must be two numbers",
        ),
        (
            {"camera": {"lines": {"entrance": {"a": [1, "x"], "b": [2, 3]}}}},
            "camera -> lines -> entrance -> a: must be two numbers",
        ),
        (
            {"camera": {"lines": {"entrance": {"a": [1, 2], "b": [1, 2]}}}},
            "camera -> lines -> entrance -> b: must differ from a",
        ),
        ({"camera": {"lines": {"entrance": {"a": [1, 2]}}}}, "camera -> lines -> entrance -> b: is required"),
        (
            {"camera": {"zones": {"till": {"polygon": [[0, 0], [1, 1]]}}}},
            "camera -> zones -> till -> polygon:",
        ),
        ({"camera": {"target_fps": 0}}, "camera -> target_fps:"),
        ({"camera": {"colour": "red"}}, "camera -> colour: unknown key"),
        ({"detector": {"threads": 0}}, "detector -> threads:"),
        ({"detector": {"family": "rcnn"}}, "detector -> family:"),
        ({"device": {"id": "bad id/with slash"}}, "device -> id:"),
        ({"camera": {"lines": {"bad name": {"a": [1, 2], "b": [3, 4]}}}}, "camera -> lines:"),
        (
            {"camera": {"lines": {"entrance": {"a": [1, 2], "b": [3, 4], "band": -0.1}}}},
            "camera -> lines -> entrance -> band:",
        ),
        (
            {"camera": {"zones": {"till": {"polygon": [[0, 0], [9, 0], [9, 9]], "seen_grace_s": -1}}}},
            "camera -> zones -> till -> seen_grace_s:",
        ),
        (
            {"camera": {"zones": {"till": {"polygon": [[0, 0], [9, 0], [9, 9]], "min_score": 1.5}}}},
            "camera -> zones -> till -> min_score:",
        ),
        ({"camera": {"masks": {"poster": {"polygon": [[0, 0], [1, 1]]}}}}, "camera -> masks -> poster -> polygon:"),
        ({"camera": {"masks": {"bad name": {"polygon": [[0, 0], [9, 0], [9, 9]]}}}}, "camera -> masks:"),
        ({"counting": {"stationary_s": 0}}, "counting -> stationary_s:"),
        ({"counting": {"hold_frames": 2}}, "counting -> hold_frames: unknown key; it was replaced by hold_s"),
        (
            {"tracker": {"max_lost_frames": 30}},
            "tracker -> max_lost_frames: unknown key; it was replaced by max_lost_s",
        ),
        ({"tracker": {"max_lost_s": -1}}, "tracker -> max_lost_s:"),
        ({"tracker": {"confirm_hits": 3}}, "tracker -> confirm_hits: unknown key; it was replaced by confirm_s"),
        ({"tracker": {"confirm_s": -0.1}}, "tracker -> confirm_s:"),
        ({"motion": {"settle_frames": 5}}, "motion -> settle_frames: unknown key; it was replaced by settle_s"),
    ],
)
def test_each_bad_key_is_named_with_its_problem(data: dict, expected: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_bad_key_is_reported_at_once() -> None:
    problems = problems_of({"camera": {"target_fps": -1, "queue_size": 0}, "detector": {"threads": 99}})
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {
        "camera -> target_fps",
        "camera -> queue_size",
        "detector -> threads",
    }


def test_problem_shows_the_value_it_got() -> None:
    (problem,) = problems_of({"camera": {"target_fps": "fast"}})
    assert "'fast'" in problem


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("[camera]\nsource = 0\n", nullcontext()),
        ("[camera\nsource = 0\n", pytest.raises(ConfigError, match="not valid TOML")),
        ("[camera]\nsource = 0\nsource = 1\n", pytest.raises(ConfigError, match="not valid TOML")),
    ],
)
def test_toml_syntax_errors_are_config_errors(tmp_path: Path, text: str, outcome) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with outcome:
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "absent.toml")


def test_a_byte_that_is_not_utf8_is_a_config_error_with_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'[device]\nid = "k\xff7"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert "not UTF-8" in str(problem)
    assert "offset 16" in str(problem)
    assert "0xff" in str(problem)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"camera": {"queue_size": True}}, "camera -> queue_size:"),
        ({"camera": {"target_fps": "10"}}, "camera -> target_fps:"),
        ({"camera": {"realtime": 1}}, "camera -> realtime:"),
        ({"camera": {"source": True}}, "camera -> source:"),
        ({"camera": {"source": 1.5}}, "camera -> source:"),
        ({"mqtt": {"host": "h", "port": "1883"}}, "mqtt -> port:"),
        ({"mqtt": {"host": "h", "keepalive_s": 30.0}}, "mqtt -> keepalive_s:"),
        ({"mqtt": {"host": 7}}, "mqtt -> host:"),
        ({"detector": {"tiles": True}}, "detector -> tiles:"),
        ({"sync": {"window_minutes": True}}, "sync -> window_minutes:"),
        ({"sync": {"coupon_offers": [[1, "2"]]}}, "sync -> coupon_offers -> 0 -> 1:"),
        ({"coupons": {"store": False}}, "coupons -> store:"),
        ({"coupons": {"scan_source": False}}, "coupons -> scan_source:"),
        ({"device": {"id": 7}}, "device -> id:"),
    ],
)
def test_types_are_strict_and_name_the_key(data: dict, expected: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_integers_are_accepted_where_decimals_are_expected() -> None:
    config = parse_config({"camera": {"target_fps": 8}, "sync": {"coupon_offers": [[1, 2]]}})
    assert config.camera.target_fps == 8.0
    assert config.sync.coupon_offers == [(1, 2)]


def test_reconnect_min_above_max_is_refused() -> None:
    problems = problems_of({"mqtt": {"host": "h", "reconnect_min_s": 30, "reconnect_max_s": 10}})
    assert any(p.startswith("mqtt -> reconnect_max_s: must not be below reconnect_min_s") for p in problems)
    assert parse_config({"mqtt": {"host": "h", "reconnect_min_s": 10, "reconnect_max_s": 10}}).mqtt is not None


def write_config(folder: Path, text: str) -> Path:
    path = folder / "agent.toml"
    path.write_text(text)
    return path


def load_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("key", ["ca_file", "cert_file", "key_file", "password_file"])
def test_a_missing_tls_or_password_file_fails_at_load(tmp_path: Path, key: str) -> None:
    for name in ("ca.crt", "dev.crt", "dev.key", "password"):
        (tmp_path / name).write_text("x")
    files = {"ca_file": "ca.crt", "cert_file": "dev.crt", "key_file": "dev.key", "password_file": "password"}
    files[key] = "absent.pem"
    lines = "".join(f'{k} = "{v}"\n' for k, v in files.items())
    problems = load_problems(write_config(tmp_path, f'[mqtt]\nhost = "broker"\n{lines}'))
    assert problems == [f"mqtt -> {key}: file not found (got {str(tmp_path / 'absent.pem')!r})"]


def test_tls_files_are_resolved_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.crt").write_text("x")
    config = load_config(write_config(tmp_path, '[mqtt]\nhost = "broker"\nca_file = "tls/ca.crt"\n'))
    assert config.mqtt is not None
    assert config.mqtt.ca_file == tmp_path / "tls" / "ca.crt"


def test_under_systemd_credentials_relative_tls_files_come_from_the_credentials_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt.key").write_text("x")
    (credentials / "mqtt.crt").write_text("x")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    text = '[mqtt]\nhost = "broker"\ncert_file = "mqtt.crt"\nkey_file = "mqtt.key"\n'
    config = load_config(write_config(tmp_path, text))
    assert config.mqtt is not None
    assert config.mqtt.key_file == credentials / "mqtt.key"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert load_problems(write_config(tmp_path, text))[0].startswith("mqtt -> cert_file: file not found")


def test_a_folder_is_not_a_tls_file(tmp_path: Path) -> None:
    problems = load_problems(write_config(tmp_path, f'[mqtt]\nhost = "broker"\nca_file = "{tmp_path}"\n'))
    assert problems == [f"mqtt -> ca_file: is a folder, not a file (got {str(tmp_path)!r})"]


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to an unprivileged user, which needs root")
def test_an_unreadable_key_file_fails_at_load() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        folder.chmod(0o755)
        key = folder / "dev.key"
        key.write_text("secret")
        key.chmod(0o600)
        path = write_config(folder, '[mqtt]\nhost = "broker"\ncert_file = "dev.key"\nkey_file = "dev.key"\n')
        path.chmod(0o644)
        os.seteuid(65534)
        try:
            problems = load_problems(path)
        finally:
            os.seteuid(0)
    assert problems[0] == f"mqtt -> cert_file: cannot read the file: permission denied (got {str(key)!r})"


@pytest.mark.parametrize("key", ["camera -> source", "coupons -> scan_source"])
def test_a_video_file_source_that_does_not_exist_is_a_config_error(tmp_path: Path, key: str) -> None:
    section, name = key.split(" -> ")
    problems = load_problems(write_config(tmp_path, f'[{section}]\n{name} = "clips/absent.avi"\n'))
    assert problems == [f"{key}: file not found (got {str(tmp_path / 'clips' / 'absent.avi')!r})"]


@pytest.mark.parametrize("source", ["0", "2", "rtsp://camera.local/stream", "HTTPS://camera.local/mjpeg"])
def test_camera_indexes_and_stream_urls_are_not_checked_on_disk(tmp_path: Path, source: str) -> None:
    config = load_config(write_config(tmp_path, f'[camera]\nsource = "{source}"\n[coupons]\nscan_source = 1\n'))
    assert config.camera.source == source


def test_a_relative_video_file_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "clip.avi").write_bytes(b"")
    config = load_config(write_config(tmp_path, '[camera]\nsource = "clip.avi"\n'))
    assert config.camera.source == str(tmp_path / "clip.avi")


def test_check_config_exits_2_for_each_load_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_bytes = tmp_path / "bytes.toml"
    bad_bytes.write_bytes(b"[camera]\nsource = '\xc3\x28'\n")
    assert main(["check-config", str(bad_bytes)]) == 2
    assert main(["run", "--config", str(bad_bytes)]) == 2
    missing_source = write_config(tmp_path, '[camera]\nsource = "absent.avi"\n')
    assert main(["check-config", str(missing_source)]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8 text at byte offset 19" in err
    assert "camera -> source: file not found" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["seeds", "Seeds"], "consultation_categories: 1: .Seeds."),
        (["seeds", "seeds"], "repeated: seeds"),
        ([], "consultation_categories"),
    ],
)
def test_bad_consultation_categories_are_named(value: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"console": {"consultation_categories": value}})


def test_consultation_categories_have_defaults_and_can_be_configured() -> None:
    assert "seeds" in parse_config({}).console.consultation_categories
    config = parse_config({"console": {"consultation_categories": ["roses", "pest_control"]}})
    assert config.console.consultation_categories == ["roses", "pest_control"]
