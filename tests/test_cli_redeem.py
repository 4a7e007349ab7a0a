"""``retail-agent redeem`` command lines: the token from standard input, texts starting with "-",
and usage errors that still give one JSON object with ``--json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main


def redeem(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "redeem", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "the following arguments are required: text"),
        (("-XYZ",), 'goes after "--"'),
        (("C1:A", "--bogus"), "unrecognized arguments: --bogus"),
        (("-",), "no token text on standard input"),
    ],
)
def test_usage_errors_with_json_print_one_json_object_and_exit_2(args: tuple[str, ...], expected: str) -> None:
    done = redeem("--json", *args)
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert expected in report["error"]
    assert "Traceback" not in done.stderr


def test_without_json_a_usage_error_prints_no_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["redeem"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "required: text" in captured.err


def test_a_config_error_with_json_is_one_json_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[coupons]\nstore = true\n")
    assert main(["redeem", "--json", "--config", str(config), "C1:X"]) == 2
    assert "coupons -> store" in json.loads(capsys.readouterr().out)["error"]


def test_the_token_is_read_from_standard_input_with_a_dash(tmp_path: Path) -> None:
    done = redeem("--json", "--db", str(tmp_path / "agent.db"), "-", stdin="C1:NOT-A-TOKEN\n")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["result"] == "malformed"


def test_a_text_starting_with_a_dash_is_read_after_double_dash(tmp_path: Path) -> None:
    done = redeem("--json", "--db", str(tmp_path / "agent.db"), "--", "-X1:ABC")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert (report["result"], report["redeemed"]) == ("malformed", False)


def test_help_exits_0() -> None:
    done = redeem("-h", "--json")
    assert done.returncode == 0
    assert '"--"' in done.stdout
