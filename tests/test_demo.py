"""The demo's summary shows small counts as a bound (``sync.display_threshold``) and queue length."""

from __future__ import annotations

from agent.demo import summary_lines
from agent.storage.buckets import ZoneSummary


def zone(visits: int, queue: tuple[float, int] | None = None) -> ZoneSummary:
    mean, peak = queue if queue is not None else (None, None)
    return ZoneSummary("z", 100, 1.5, 4, visits, visits, visits, 3.0, 9.0, queue_mean=mean, queue_max=peak)


def test_counts_below_the_display_threshold_show_as_a_bound() -> None:
    lines = summary_lines({"door": (3, 42)}, {"shelf": zone(7)}, threshold=11)
    assert lines[0].split() == ["line", "door", "in", "<11", "out", "42"]
    assert "<11 visits" in lines[1]
    assert "queue" not in lines[1]


def test_a_queue_zone_shows_its_queue_length() -> None:
    [line] = summary_lines({}, {"till": zone(12, queue=(2.25, 5))}, threshold=11)
    assert "12 visits" in line
    assert line.endswith("queue mean 2.2, peak 5")
