"""The clock laser's flicker noise is an exact OU update per component, whatever the step: the
factors kept for a repeated step length give the same values as computing them afresh, and a
changed step length or strength is not served stale factors."""

from __future__ import annotations

import itertools
import math

from ionpilot.sim.physics import _FLICKER_TIME_CONSTANTS, FlickerNoise


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
