"""``retail-agent eval`` on the command line: bad arguments in words, and the figures on the clip."""

from __future__ import annotations

from pathlib import Path

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
