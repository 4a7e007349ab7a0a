"""Differential privacy for coupon counts: an exact discrete Laplace sampler (standard library only).

The sampler follows Canonne, Kamath and Steinke (2020), "The Discrete Gaussian for Differential
Privacy", Algorithms 1 and 2. Every step draws uniform integers from the random source and compares
integers, so the output distribution is exactly

    P(X = x) = (1 - e^(-1/t)) / (1 + e^(-1/t)) * e^(-|x| / t)        for every integer x,

with t the scale, a rational number. There is no floating point anywhere in the sampling path, so
none of the rounding artefacts that leak information from floating-point Laplace samplers.

Adding discrete Laplace noise of scale ``cap / epsilon`` to a count to which one person contributes
at most ``cap`` makes the released count epsilon-differentially private for that person.
"""

from __future__ import annotations

import logging
import math
import random
from fractions import Fraction
from typing import Protocol

logger = logging.getLogger(__name__)

NOISE = "discrete_laplace"
"""The noise name carried by released payloads."""


class IntegerSource(Protocol):
    """Uniform integers: ``random.SystemRandom()`` in production, a seeded ``random.Random`` in tests."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1, /) -> int: ...


def system_rng() -> random.SystemRandom:
    """The operating system's cryptographic random source (what releases must use)."""
    return random.SystemRandom()


def _bernoulli(numerator: int, denominator: int, rng: IntegerSource) -> bool:
    """True with probability numerator/denominator (0 <= numerator <= denominator), exactly."""
    return rng.randrange(denominator) < numerator


def _bernoulli_exp_small(numerator: int, denominator: int, rng: IntegerSource) -> bool:
    """True with probability exp(-g) for g = numerator/denominator in [0, 1] (Algorithm 1, first case).

    Draws A_k ~ Bernoulli(g / k) for k = 1, 2, ... until one is 0; the number of draws is odd with
    probability exactly exp(-g).
    """
    k = 1
    while _bernoulli(numerator, denominator * k, rng):
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction, rng: IntegerSource) -> bool:
    """True with probability exp(-gamma) for a rational gamma >= 0, exactly (Algorithm 1)."""
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, not {gamma}")
    numerator, denominator = gamma.numerator, gamma.denominator
    whole, rest = divmod(numerator, denominator)
    # exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma))): all must come up true.
    for _ in range(whole):
        if not _bernoulli_exp_small(1, 1, rng):
            return False
    return _bernoulli_exp_small(rest, denominator, rng)


def sample_discrete_laplace(scale: Fraction, rng: IntegerSource) -> int:
    """One exact sample X with P(X = x) proportional to exp(-|x| / scale) (Algorithm 2).

    With scale = t/s in lowest terms: draw a geometric X0 with parameter exp(-1/t) as U + t*V
    (U uniform on 0..t-1 accepted with probability exp(-U/t), V counting exp(-1) successes), take
    Y = floor(X0 / s), which is geometric with parameter exp(-s/t), and attach a fair sign,
    rejecting "-0" so zero is not counted twice.
    """
    scale = Fraction(scale)
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    t, s = scale.numerator, scale.denominator
    while True:
        u = rng.randrange(t)
        if not _bernoulli_exp_small(u, t, rng):
            continue
        v = 0
        while _bernoulli_exp_small(1, 1, rng):
            v += 1
        y = (u + t * v) // s
        negative = rng.randrange(2) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def as_fraction(value: Fraction | int | float) -> Fraction:
    """An exact rational for a configured number: a float is read as the decimal it prints as (0.1 → 1/10)."""
    if isinstance(value, bool):
        raise TypeError("a privacy parameter must be a number, not a bool")
    if isinstance(value, Fraction | int):
        return Fraction(value)
    if not math.isfinite(value):
        raise ValueError(f"a privacy parameter must be finite, not {value}")
    return Fraction(repr(value))


def noisy_count(
    true_count: int,
    cap: int,
    epsilon: Fraction | float,
    rng: IntegerSource | None = None,
) -> int:
    """``true_count`` plus discrete Laplace noise of scale ``cap / epsilon``.

    ``cap`` is the most one person can add to the count, ``epsilon`` the privacy loss allowed for
    this release. Uses the system's cryptographic random source unless ``rng`` is given.
    """
    if isinstance(true_count, bool) or not isinstance(true_count, int) or true_count < 0:
        raise ValueError(f"true_count must be a non-negative integer, not {true_count!r}")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"cap must be a positive integer, not {cap!r}")
    eps = as_fraction(epsilon)
    if eps <= 0:
        raise ValueError(f"epsilon must be positive, not {epsilon}")
    return true_count + sample_discrete_laplace(Fraction(cap) / eps, rng or system_rng())


def discrete_laplace_variance(scale: Fraction | float) -> float:
    """The exact variance 2 e^(-1/t) / (1 - e^(-1/t))^2 of the discrete Laplace of scale t (for reports)."""
    q = math.exp(-1.0 / float(scale))
    return 2.0 * q / (1.0 - q) ** 2
