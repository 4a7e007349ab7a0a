"""Wave planning and the abort rule, as tables of cases (pure logic)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import pytest

from provisioning.rollout.waves import WaveSpecError, judge, parse_rate, parse_waves, plan_waves


@pytest.mark.parametrize(
    ("spec", "total", "sizes"),
    [
        ("1,10%,50%,100%", 200, [1, 19, 80, 100]),
        ("1,10%,50%,100%", 5, [1, 2, 2]),  # 10% of 5 rounds up to 1: no wave of its own
        ("1,10%,50%,100%", 1, [1]),
        ("1,10%,50%,100%", 2, [1, 1]),
        ("100%", 7, [7]),
        ("2,5,100%", 10, [2, 3, 5]),
        ("5,100%", 3, [3]),  # a canary count above the fleet covers it all
        ("1,33%,66%,100%", 3, [1, 1, 1]),
        ("25%,50%,75%,100%", 8, [2, 2, 2, 2]),
        ("1, 50% ,100%", 4, [1, 1, 2]),
    ],
)
def test_waves_are_cumulative_marks_and_cover_every_target_once(spec: str, total: int, sizes: list[int]) -> None:
    targets = [f"d{i}" for i in range(total)]
    waves = plan_waves(targets, parse_waves(spec))
    assert [len(wave) for wave in waves] == sizes
    assert [device for wave in waves for device in wave] == targets
    assert waves[0][0] == "d0"  # the first listed device is the canary


@pytest.mark.parametrize(
    ("spec", "expectation"),
    [
        ("1,10%,50%,100%", nullcontext()),
        ("1,10%,50%", pytest.raises(WaveSpecError, match="last wave must be 100%")),
        ("0,100%", pytest.raises(WaveSpecError, match="'0' is neither")),
        ("1,abc,100%", pytest.raises(WaveSpecError, match="'abc' is neither")),
        ("1,150%,100%", pytest.raises(WaveSpecError, match="'150%' is neither")),
        ("1,,100%", pytest.raises(WaveSpecError, match="--waves")),
        ("1,50%,10%,100%", pytest.raises(WaveSpecError, match="percentages must grow")),
        ("5,2,100%", pytest.raises(WaveSpecError, match="counts must grow")),
    ],
)
def test_bad_wave_specs_are_refused_naming_the_option(spec: str, expectation: AbstractContextManager[object]) -> None:
    with expectation:
        parse_waves(spec)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10%", 0.1), ("0.25", 0.25), ("0", 0.0), ("100%", 1.0)],
)
def test_failure_rates_read_as_fractions_or_percentages(text: str, expected: float) -> None:
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["150%", "-1", "x", "1.5"])
def test_bad_failure_rates_name_the_option(text: str) -> None:
    with pytest.raises(WaveSpecError, match="--max-failure-rate"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("states", "threshold", "proceed", "failures"),
    [
        (["SUCCEEDED"], 0.1, True, 0),
        (["REJECTED"], 0.1, False, 1),  # a failed canary stops everything
        (["SUCCEEDED"] * 9 + ["FAILED"], 0.1, True, 1),  # exactly at the threshold goes on
        (["SUCCEEDED"] * 8 + ["FAILED", "ROLLED_BACK"], 0.1, False, 2),
        (["SUCCEEDED", "CANCELED"], 0.0, True, 0),  # canceled by the operator is no failure
        (["SUCCEEDED", None], 0.4, False, 1),  # no answer within the wave's time counts as failed
        (["SUCCEEDED", "IN_PROGRESS"], 0.4, False, 1),
        (["TIMED_OUT", "SUCCEEDED", "SUCCEEDED"], 0.5, True, 1),
    ],
)
def test_the_rollout_stops_only_above_its_failure_threshold(
    states: list[str | None], threshold: float, proceed: bool, failures: int
) -> None:
    verdict = judge(states, threshold)
    assert verdict.proceed is proceed
    assert verdict.failures == failures
    assert verdict.started == len(states)
