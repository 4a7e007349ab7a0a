"""Reconnect backoff and target-rate thinning."""

from __future__ import annotations

import itertools
import random
from contextlib import AbstractContextManager
from contextlib import nullcontext as does_not_raise

import pytest

from agent.vision.backoff import Backoff, RateGate


def test_base_delay_doubles_from_half_a_second_and_stops_at_the_cap() -> None:
    policy = Backoff(initial_s=0.5, max_s=30.0, multiplier=2.0)
    assert [policy.base(n) for n in range(9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_huge_attempt_numbers_stay_at_the_cap_without_overflow() -> None:
    assert Backoff(max_s=30.0).base(10_000) == 30.0


def test_jitter_only_shortens_the_delay_and_by_at_most_the_jitter_fraction() -> None:
    policy = Backoff(initial_s=0.5, max_s=30.0, jitter=0.2)
    assert policy.delay(3, 0.0) == pytest.approx(4.0)
    assert policy.delay(3, 0.5) == pytest.approx(3.6)
    assert policy.delay(3, 0.999999) == pytest.approx(3.2, abs=1e-5)
    assert policy.delay(20, 0.0) == 30.0


def test_sampled_delays_are_bounded_by_cap_and_jitter_for_every_attempt() -> None:
    policy = Backoff(initial_s=0.5, max_s=30.0, jitter=0.25)
    rng = random.Random(42)
    for attempt in range(40):
        base = policy.base(attempt)
        for _ in range(50):
            delay = policy.sample(attempt, rng)
            assert 0.75 * base <= delay <= base <= 30.0


def test_sampled_delays_actually_vary_so_devices_do_not_retry_in_step() -> None:
    policy = Backoff(jitter=0.2)
    rng = random.Random(7)
    assert len({policy.sample(4, rng) for _ in range(20)}) > 1


def test_zero_jitter_gives_the_exact_base_delay() -> None:
    policy = Backoff(jitter=0.0)
    assert policy.sample(2, random.Random(1)) == 2.0


def test_multiplier_of_one_gives_a_constant_delay() -> None:
    policy = Backoff(initial_s=1.5, max_s=30.0, multiplier=1.0, jitter=0.0)
    assert [policy.delay(n, 0.0) for n in (0, 5, 500)] == [1.5, 1.5, 1.5]


@pytest.mark.parametrize(
    ("kwargs", "expectation"),
    [
        ({}, does_not_raise()),
        ({"initial_s": 0.0}, pytest.raises(ValueError, match="initial_s")),
        ({"initial_s": 5.0, "max_s": 1.0}, pytest.raises(ValueError, match="max_s")),
        ({"multiplier": 0.5}, pytest.raises(ValueError, match="multiplier")),
        ({"jitter": 1.0}, pytest.raises(ValueError, match="jitter")),
        ({"jitter": -0.1}, pytest.raises(ValueError, match="jitter")),
        ({"reset_after_s": -1.0}, pytest.raises(ValueError, match="reset_after_s")),
    ],
)
def test_backoff_validates_its_settings(kwargs: dict[str, float], expectation: AbstractContextManager[object]) -> None:
    with expectation:
        Backoff(**kwargs)


def test_delay_rejects_negative_attempts_and_draws_outside_unit_interval() -> None:
    policy = Backoff()
    with pytest.raises(ValueError, match="attempt"):
        policy.base(-1)
    with pytest.raises(ValueError, match="draw"):
        policy.delay(0, 1.0)


def _admitted(gate: RateGate, times: list[float]) -> list[float]:
    return [t for t in times if gate.admit(t)]


def test_rate_gate_keeps_every_fourth_frame_of_a_ten_fps_stream_at_two_and_a_half_fps() -> None:
    times = [i / 10 for i in range(40)]
    assert _admitted(RateGate(2.5), times) == [times[i] for i in range(0, 40, 4)]


def test_rate_gate_passes_everything_when_the_stream_is_slower_than_the_target() -> None:
    times = [i * 0.2 for i in range(20)]
    assert _admitted(RateGate(10.0), times) == times


def test_rate_gate_passes_a_jittery_camera_running_at_the_target_rate() -> None:
    rng = random.Random(3)
    times = [i * 0.1 + rng.uniform(-0.01, 0.01) for i in range(100)]
    assert len(_admitted(RateGate(10.0), times)) == 100


def test_rate_gate_long_run_rate_does_not_exceed_target_for_a_thirty_fps_camera() -> None:
    times = [i / 30 for i in range(300)]  # ten seconds
    kept = _admitted(RateGate(7.0), times)
    assert 69 <= len(kept) <= 71
    assert min(b - a for a, b in itertools.pairwise(kept)) > 0.1


def test_rate_gate_restarts_its_schedule_after_a_gap_instead_of_bursting() -> None:
    gate = RateGate(10.0)
    assert _admitted(gate, [0.0, 0.05, 0.1]) == [0.0, 0.1]
    # The stream stalls for five seconds, then resumes at 30 fps: no catch-up burst.
    resumed = [5.0 + i / 30 for i in range(30)]
    kept = _admitted(gate, resumed)
    assert kept[0] == 5.0
    assert len(kept) == 10


def test_rate_gate_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="fps"):
        RateGate(0.0)
