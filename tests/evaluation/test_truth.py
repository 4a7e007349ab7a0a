from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError
from agent.evaluation import evaluate, load_truth
from agent.evaluation.scores import accuracy
from agent.vision.count import CountReport

TRUTH = """
video = "clip.avi"
[lines.door]
a = [0, 100]
b = [200, 100]
in = 10
out = 6

[lines.side]
a = [50, 0]
b = [50, 200]
in = 4
out = 0

[zones.middle]
polygon = [[0, 0], [100, 0], [100, 100], [0, 100]]
samples = [{ frame = 0, count = 2 }, { frame = 2, count = 1 }, { frame = 99, count = 5 }]
"""


def report(lines: dict[str, dict[str, int]], zone: list[int]) -> CountReport:
    return CountReport("clip.avi", len(zone), 1.0, "m", "0" * 64, lines, {"middle": zone})


def test_truth_file_loads_lines_and_zones(tmp_path: Path) -> None:
    path = tmp_path / "truth.toml"
    path.write_text(TRUTH)
    truth = load_truth(path)
    assert [line.name for line in truth.lines] == ["door", "side"]
    assert truth.lines[0].expected_in == 10
    assert truth.line_configs()["side"].b == (50, 200)
    assert truth.zones[0].samples == ((0, 2), (2, 1), (99, 5))


def test_accuracy_is_one_minus_total_error_over_total_truth(tmp_path: Path) -> None:
    path = tmp_path / "truth.toml"
    path.write_text(TRUTH)
    result = evaluate(
        load_truth(path),
        report({"door": {"in": 11, "out": 5}, "side": {"in": 4, "out": 1}}, [2, 3, 1]),
    )
    door, side = result.lines
    assert door.abs_error == 2
    assert door.accuracy == pytest.approx(1 - 2 / 16)
    assert side.abs_error == 1
    assert result.line_accuracy == pytest.approx(1 - 3 / 20)
    (zone,) = result.zones
    assert zone.samples == 2  # frame 99 is past the end of the clip
    assert zone.mean_abs_error == 0.0
    assert result.to_json()["lines"]["door"]["error"] == {"in": 1, "out": -1}
    assert "85.0%" in result.describe()


@pytest.mark.parametrize(("error", "total", "expected"), [(0, 0, 1.0), (3, 0, 0.0), (30, 10, 0.0), (1, 4, 0.75)])
def test_accuracy_edges(error: int, total: int, expected: float) -> None:
    assert accuracy(error, total) == expected


def test_bad_truth_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "truth.toml"
    path.write_text("[lines.door]\na = [0, 1]\nb = [5]\nin = -1\nout = 2\n")
    with pytest.raises(ConfigError) as caught:
        load_truth(path)
    paths = {p.path for p in caught.value.problems}
    assert paths == {"lines -> door -> in", "lines -> door -> b"}


TRUTH_FILE = Path(__file__).resolve().parents[1] / "data" / "vtest_truth.toml"


def test_the_sample_truth_file_loads_with_every_crossing_listed() -> None:
    truth = load_truth(TRUTH_FILE)
    assert {line.name for line in truth.lines} >= {"walkway_west", "walkway_horizontal", "walkway_diagonal"}
    assert {zone.name for zone in truth.zones} >= {"walkway_centre", "west_half", "junction"}
    for line in truth.lines:
        assert line.crossings is not None, line.name
        assert len(line.frames("in")) == line.expected_in and len(line.frames("out")) == line.expected_out
        assert all(0 <= c.frame < 795 for c in line.crossings), line.name


def test_crossings_load_sorted_by_frame(tmp_path: Path) -> None:
    path = tmp_path / "truth.toml"
    path.write_text(
        "[lines.door]\na = [0, 100]\nb = [200, 100]\nin = 1\nout = 1\n"
        'crossings = [{ frame = 40, direction = "out" }, { frame = 7, direction = "in" }]\n'
    )
    (door,) = load_truth(path).lines
    assert door.frames("in") == (7,)
    assert door.frames("out") == (40,)


@pytest.mark.parametrize(
    ("crossings", "key"),
    [
        pytest.param('[{ frame = 7, direction = "in" }]', "lines -> door -> crossings", id="disagrees-with-totals"),
        pytest.param(
            '[{ frame = -3, direction = "in" }, { frame = 8, direction = "out" }]',
            "lines -> door -> crossings -> 0 -> frame",
            id="negative-frame",
        ),
        pytest.param(
            '[{ frame = 3, direction = "up" }, { frame = 8, direction = "out" }]',
            "lines -> door -> crossings -> 0 -> direction",
            id="bad-direction",
        ),
        pytest.param('"many"', "lines -> door -> crossings", id="not-a-list"),
    ],
)
def test_bad_crossings_name_the_key(tmp_path: Path, crossings: str, key: str) -> None:
    path = tmp_path / "truth.toml"
    path.write_text(f"[lines.door]\na = [0, 100]\nb = [200, 100]\nin = 1\nout = 1\ncrossings = {crossings}\n")
    with pytest.raises(ConfigError) as caught:
        load_truth(path)
    assert key in {p.path for p in caught.value.problems}


def test_bad_zone_sample_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "truth.toml"
    path.write_text('[zones.hall]\npolygon = [[0, 0], [9, 0], [9, 9]]\nsamples = [{ frame = 3, count = "two" }]\n')
    with pytest.raises(ConfigError) as caught:
        load_truth(path)
    assert {p.path for p in caught.value.problems} == {"zones -> hall -> samples -> 0 -> count"}
