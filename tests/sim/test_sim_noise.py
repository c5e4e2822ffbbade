"""The noise the clock shots draw: the flicker noise is an exact OU update per component, whatever
the step (the factors kept for a repeated step length give the same values as computing them
afresh; a changed step length or strength is not served stale factors), and a block of normal
draws is the same values in the same order as one draw at a time."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ionpilot.sim.physics import _FLICKER_TIME_CONSTANTS, FlickerNoise, NormalStream


def reference_step(values: list[float], sigma: float, dt: float, draws: list[float]) -> None:
    for i, tau in enumerate(_FLICKER_TIME_CONSTANTS):
        a = math.exp(-dt / tau)
        values[i] = values[i] * a + sigma * math.sqrt(1 - a * a) * draws[i]


def test_kept_factors_give_the_exact_update() -> None:
    draws = [0.3 * ((7 * k) % 11 - 5) for k in range(200)]
    stream = iter(draws)
    noise = FlickerNoise(2.0, [1.0, -2.0, 0.5, 0.0, 3.0, -1.0, 0.25])
    expected = list(noise.values)
    used = iter(draws)
    for dt, sigma in [(0.5, 2.0), (0.5, 2.0), (0.5, 2.0), (0.25, 2.0), (0.5, 2.0), (0.5, 3.0)]:
        noise.sigma = sigma
        noise.step(dt, lambda: next(stream))
        reference_step(expected, sigma, dt, list(itertools.islice(used, 7)))
        assert noise.values == expected  # bit for bit
    assert noise.value == sum(expected)


def test_a_block_of_normal_draws_is_the_draws_one_at_a_time() -> None:
    one = NormalStream(np.random.default_rng(7), block=16)
    block = NormalStream(np.random.default_rng(7), block=16)
    singles = [one() for _ in range(3 + 10 + 10 + 0 + 1)]
    drawn: list[float] = []
    for n in (3, 10, 10, 0, 1):  # the second block of 10 crosses a refill
        drawn += block.draws(n)
    assert drawn == singles
    assert one() == block()  # and the streams go on alike
