"""The exact discrete Laplace sampler: its samples follow the exact distribution, and nothing else."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import pytest

from agent.sync.dp import (
    as_fraction,
    bernoulli_exp,
    discrete_laplace_variance,
    noisy_count,
    sample_discrete_laplace,
)

N = 200_000
Z = 5.0  # bounds are five standard errors wide: a correct sampler fails less than once in a million


def exact_pmf(x: int, scale: Fraction) -> float:
    q = math.exp(-1 / float(scale))
    return (1 - q) / (1 + q) * q ** abs(x)


def exact_tail(k: int, scale: Fraction) -> float:
    """P(|X| >= k) for k >= 1."""
    q = math.exp(-1 / float(scale))
    return 2 * q**k / (1 + q)


@pytest.fixture(scope="module", params=[Fraction(1), Fraction(5, 2)], ids=["scale-1", "scale-5/2"])
def samples(request: pytest.FixtureRequest) -> tuple[Fraction, list[int]]:
    scale: Fraction = request.param
    rng = random.Random(20_240_601 + scale.numerator)
    return scale, [sample_discrete_laplace(scale, rng) for _ in range(N)]


def test_samples_are_centred_on_zero(samples: tuple[Fraction, list[int]]) -> None:
    scale, xs = samples
    mean = sum(xs) / N
    assert abs(mean) < Z * math.sqrt(discrete_laplace_variance(scale) / N)


def test_sample_variance_matches_the_exact_variance(samples: tuple[Fraction, list[int]]) -> None:
    scale, xs = samples
    second = sum(x * x for x in xs) / N
    fourth = sum(x**4 for x in xs) / N
    exact = discrete_laplace_variance(scale)
    q = math.exp(-1 / float(scale))
    assert exact == pytest.approx(2 * q / (1 - q) ** 2)
    assert abs(second - exact) < Z * math.sqrt((fourth - second**2) / N)


@pytest.mark.parametrize("x", [0, 1, -1, 2, -2])
def test_the_probability_of_small_values_matches_the_exact_pmf(samples: tuple[Fraction, list[int]], x: int) -> None:
    scale, xs = samples
    p = exact_pmf(x, scale)
    observed = Counter(xs)[x] / N
    assert abs(observed - p) < Z * math.sqrt(p * (1 - p) / N)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_the_tail_matches_the_exact_tail(samples: tuple[Fraction, list[int]], k: int) -> None:
    scale, xs = samples
    p = exact_tail(k, scale)
    observed = sum(1 for x in xs if abs(x) >= k) / N
    assert abs(observed - p) < Z * math.sqrt(p * (1 - p) / N)


def test_the_histogram_passes_a_chi_square_test(samples: tuple[Fraction, list[int]]) -> None:
    scale, xs = samples
    counts = Counter(max(-4, min(4, x)) for x in xs)  # -4 and 4 hold the tails
    chi2 = 0.0
    for x in range(-4, 5):
        p = exact_tail(4, scale) / 2 if abs(x) == 4 else exact_pmf(x, scale)
        chi2 += (counts[x] - N * p) ** 2 / (N * p)
    assert chi2 < 37.7  # 8 degrees of freedom, p = 1e-5


def test_negative_and_positive_values_are_equally_likely(samples: tuple[Fraction, list[int]]) -> None:
    _, xs = samples
    positive, negative = sum(1 for x in xs if x > 0), sum(1 for x in xs if x < 0)
    assert abs(positive - negative) < Z * math.sqrt(positive + negative)


def test_a_seeded_source_gives_the_same_samples() -> None:
    a, b = random.Random(7), random.Random(7)
    first = [sample_discrete_laplace(Fraction(3), a) for _ in range(50)]
    assert first == [sample_discrete_laplace(Fraction(3), b) for _ in range(50)]
    assert len(set(first)) > 1


def test_bernoulli_exp_is_exact_in_frequency() -> None:
    rng = random.Random(3)
    for gamma in (Fraction(0), Fraction(1, 3), Fraction(7, 4)):
        hits = sum(bernoulli_exp(gamma, rng) for _ in range(40_000))
        p = math.exp(-float(gamma))
        assert abs(hits / 40_000 - p) < Z * math.sqrt(max(p * (1 - p), 1e-12) / 40_000) + 1e-12


def test_the_sampling_path_uses_integers_only() -> None:
    class IntegerOnly(random.Random):
        def random(self) -> float:
            raise AssertionError("the sampler must not draw floats")

        def getrandbits(self, k: int, /) -> int:  # keeps randrange on integer draws
            return super().getrandbits(k)

    rng = IntegerOnly(5)
    values = [sample_discrete_laplace(Fraction(96), rng) for _ in range(200)]
    assert all(isinstance(v, int) for v in values)
    assert isinstance(noisy_count(3, 1, Fraction(1, 96), rng), int)


def test_noisy_count_uses_scale_cap_over_epsilon() -> None:
    # cap 2, epsilon 1/2: the same draws as sampling scale 4 directly.
    direct = 3 + sample_discrete_laplace(Fraction(4), random.Random(11))
    assert noisy_count(3, 2, Fraction(1, 2), random.Random(11)) == direct
    assert noisy_count(3, 2, 0.5, random.Random(11)) == direct
    rng = random.Random(12)
    spread = [noisy_count(10, 1, 0.25, rng) - 10 for _ in range(20_000)]
    assert sum(x * x for x in spread) / len(spread) == pytest.approx(discrete_laplace_variance(Fraction(4)), rel=0.08)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1, 1, 1.0), ValueError),
        ((1, 0, 1.0), ValueError),
        ((1, 1, 0.0), ValueError),
        ((1, 1, -1.0), ValueError),
        ((1, 1, float("nan")), ValueError),
        ((True, 1, 1.0), ValueError),
    ],
)
def test_noisy_count_refuses_bad_parameters(args: tuple[object, object, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        noisy_count(*args)  # type: ignore[arg-type]


def test_a_non_positive_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        sample_discrete_laplace(Fraction(0), random.Random(1))


def test_configured_floats_become_the_decimals_they_print_as() -> None:
    assert as_fraction(0.1) == Fraction(1, 10)
    assert as_fraction(1.0) == 1
    assert as_fraction(Fraction(1, 96)) == Fraction(1, 96)
