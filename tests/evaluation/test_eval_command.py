"""``retail-agent eval`` on the command line: bad arguments in words, and the figures on the clip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from agent.cli import main

TRUTH_FILE = Path(__file__).resolve().parents[1] / "data" / "vtest_truth.toml"


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--frames", "399", "FIRST:LAST"),
        ("--frames", "400:10", "first <= last"),
        ("--tolerance", "-2", "whole number of frames"),
    ],
)
def test_bad_eval_options_are_refused_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, words: str
) -> None:
    assert main(["eval", str(tmp_path / "clip.avi"), "--truth", str(TRUTH_FILE), option, value]) == 2
    err = capsys.readouterr().err
    assert option in err and words in err
    assert "Traceback" not in err


def test_a_bad_truth_file_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "truth.toml"
    truth.write_text(
        '[lines.door]\na = [0, 1]\nb = [5, 1]\nin = 1\nout = 0\ncrossings = [{ frame = 3, direction = "up" }]\n'
    )
    video = tmp_path / "clip.avi"
    video.write_bytes(b"not read: the truth file is checked first")
    assert main(["eval", str(video), "--truth", str(truth)]) == 2
    assert "lines -> door -> crossings -> 0 -> direction" in capsys.readouterr().err


OLD_LINES = ("walkway_west", "junction_east", "sign_post")


def _eval_json(capsys: pytest.CaptureFixture[str], video: Path, *model: str) -> dict[str, Any]:
    argv = ["eval", str(video), "--truth", str(TRUTH_FILE), "--frames", "0:399", "--frames", "400:794", "--json"]
    assert main([*argv, *model]) == 0
    return cast(dict[str, Any], json.loads(capsys.readouterr().out))


def _old_lines_accuracy(result: dict[str, Any]) -> float:
    lines = [result["lines"][name] for name in OLD_LINES]
    error = sum(abs(line["error"]["in"]) + abs(line["error"]["out"]) for line in lines)
    return 1 - error / sum(line["expected"]["in"] + line["expected"]["out"] for line in lines)


def _check(result: dict[str, Any], floors: dict[str, float], zone_ceilings: dict[str, float]) -> None:
    first, second = result["ranges"]
    assert (first["frames"], second["frames"]) == ([0, 399], [400, 794])
    figures = {
        "accuracy": result["accuracy"],
        "f1": result["events"]["f1"],
        "accuracy 0:399": first["accuracy"],
        "accuracy 400:794": second["accuracy"],
        "old lines": _old_lines_accuracy(result),
    }
    zones = {name: zone["mae"] for name, zone in result["zones"].items()}
    low = {k: v for k, v in figures.items() if v < floors[k]}
    high = {k: v for k, v in zones.items() if v > zone_ceilings[k]}
    assert not low and not high, f"below the floor: {low}; zone MAE above the ceiling: {high}"


@pytest.mark.integration
@pytest.mark.slow
def test_default_model_on_the_sample_truth(vtest_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Figures that hold for the shipped model (measured 94.8 %, F1 93.1 %, halves 93.4 % and 89.1 %,
    the three original lines 94.4 %; zone MAE 0.25, 0.31, 0.31): a change that loses more fails. The
    targets stay hard floors under these: 0.90 for all lines and for the original lines, zone MAE 0.6."""
    result = _eval_json(capsys, vtest_path)
    assert result["frames"] == 795
    _check(
        result,
        {"accuracy": 0.94, "f1": 0.93, "accuracy 0:399": 0.93, "accuracy 400:794": 0.88, "old lines": 0.93},
        {"walkway_centre": 0.3, "west_half": 0.35, "junction": 0.35},
    )


@pytest.mark.integration
@pytest.mark.slow
def test_yolox_nano_on_the_sample_truth(vtest_path: Path, yolox_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Figures that hold for YOLOX-Nano (measured 98.3 %, F1 99.1 %, halves 96.7 % and 100 %, the three
    original lines 98.9 %; zone MAE 0.19, 0.25, 0.00); the targets, 0.97 for all lines and for the
    original lines and zone MAE 0.3, stay hard floors under these."""
    result = _eval_json(capsys, vtest_path, "--model", str(yolox_path), "--family", "yolox")
    _check(
        result,
        {"accuracy": 0.98, "f1": 0.99, "accuracy 0:399": 0.96, "accuracy 400:794": 0.98, "old lines": 0.98},
        {"walkway_centre": 0.25, "west_half": 0.3, "junction": 0.1},
    )
