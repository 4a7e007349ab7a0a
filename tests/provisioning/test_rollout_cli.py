"""Bad rollout input gets a clear message naming the option, file or line, exit 2 (or 1), no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning import cli


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    assert cli.main(["fleet", "keygen", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys" / "fleet.key"


def start(tmp_path: Path, key: Path, *extra: str, devices: str = "s1/till-1\n") -> list[str]:
    (tmp_path / "devices.txt").write_text(devices, encoding="utf-8")
    (tmp_path / "desired.toml").write_text("[camera]\ntarget_fps = 4.0\n", encoding="utf-8")
    return [
        "fleet", "rollout", "start", "--state", str(tmp_path / "r.json"), "--key", str(key), "--tenant", "acme",
        "--broker", "127.0.0.1:1", "--id", "cfg1", "--devices", str(tmp_path / "devices.txt"),
        "--config", str(tmp_path / "desired.toml"), "--version", "3", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "devices", "message"),
    [
        (["--waves", "1,50%"], "s1/till-1\n", "--waves: the last wave must be 100%"),
        (["--max-failure-rate", "2"], "s1/till-1\n", "--max-failure-rate '2'"),
        ([], "s1/till-1\ns1/till-1\n", "line 2: s1/till-1 is listed twice"),
        ([], "# none\n", "no device listed"),
        ([], "till-1\n", "line 1: write each device as STORE/DEVICE"),
        ([], "s1/till 1\n", "line 1:"),
        (["--version", "-1"], "s1/till-1\n", "--version"),
    ],
)
def test_bad_start_input_is_named(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str], extra: list[str], devices: str, message: str
) -> None:
    code = cli.main(start(tmp_path, keys, *extra, devices=devices))
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_an_unreachable_broker_is_reported_without_a_state_file(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(start(tmp_path, keys)) == 2
    assert "cannot reach the broker at 127.0.0.1:1" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_an_existing_state_file_is_never_overwritten(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.json").write_text("{}", encoding="utf-8")
    assert cli.main(start(tmp_path, keys)) == 1
    assert "already exists: resume that rollout" in capsys.readouterr().err
    assert (tmp_path / "r.json").read_text() == "{}"


@pytest.mark.parametrize("action", ["resume", "status", "cancel"])
def test_a_missing_or_foreign_state_file_is_named(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    key = ["--key", str(keys)] if action != "status" else []
    assert cli.main(["fleet", "rollout", action, "--state", str(tmp_path / "none.json"), *key]) == 2
    assert "no such file (start a rollout first)" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"schema": "x"}', encoding="utf-8")
    assert cli.main(["fleet", "rollout", action, "--state", str(tmp_path / "other.json"), *key]) == 2
    assert "not a rollout state file" in capsys.readouterr().err
