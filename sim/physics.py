"""Small pure formulas the world is built from: line shapes, Bessel factors, noise processes.

Scalar `math` on purpose: the clock fast path calls these ~10^5 times per simulated day.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SPEED_OF_LIGHT = 299_792_458.0
# ADEV of a sum of equal-variance Ornstein-Uhlenbeck processes spaced a decade apart, relative to
# the standard deviation of one of them (flat to +-3 % from 0.3 s to 10^4 s; see flicker_sigma).
_OU_DECADE_ADEV = 0.77
_FLICKER_TIME_CONSTANTS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


def rabi_excitation(rabi_hz: float, detuning_hz: float, duration_s: float) -> float:
    """P = Ω²/(Ω²+Δ²)·sin²(t·√(Ω²+Δ²)/2), with Ω/2π and Δ/2π given in Hz (REFERENCE §1)."""
    omega = 2 * math.pi * rabi_hz
    delta = 2 * math.pi * detuning_hz
    general = math.hypot(omega, delta)
    if general == 0.0:
        return 0.0
    return (omega / general) ** 2 * math.sin(duration_s * general / 2) ** 2


def bessel_j(order: int, x: float) -> float:
    """J0 or J1 by their power series (|x| ≲ 5 is all micromotion needs)."""
    half = x / 2
    term = 1.0 if order == 0 else half
    total = term
    for k in range(1, 30):
        term *= -(half * half) / (k * (k + order))
        total += term
        if abs(term) < 1e-15:
            break
    return total


def lorentzian(detuning_hz: float, fwhm_hz: float) -> float:
    """Unit-height Lorentzian."""
    x = 2 * detuning_hz / fwhm_hz
    return 1.0 / (1.0 + x * x)


def scattering(detuning_hz: float, linewidth_hz: float, saturation: float = 1.0) -> float:
    """Two-level scattering rate shape s/(1+s+(2Δ/Γ)²), up to the factor Γ/2."""
    x = 2 * detuning_hz / linewidth_hz
    return saturation / (1.0 + saturation + x * x)


def poisson(rng: random.Random, mean: float) -> int:
    """Poisson draw: Knuth below 30, a rounded normal above (photon counts, exact enough)."""
    if mean <= 0.0:
        return 0
    if mean < 30.0:
        limit = math.exp(-mean)
        k = 0
        p = rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


@dataclass
class FlickerNoise:
    """Flicker frequency noise as a sum of OU processes a decade apart, updated exactly for any
    step, so one hour without a probe costs the same as one probe."""

    sigma: float  # rms of each component, Hz
    values: list[float] = field(default_factory=lambda: [0.0] * len(_FLICKER_TIME_CONSTANTS))
    # the update's (decay, kick) per component for the last step length: the clock shots'
    # pulser runs step the noise by the same run length again and again
    _step: tuple[float, float, tuple[tuple[float, float], ...]] = field(
        default=(math.nan, math.nan, ()), repr=False, compare=False
    )

    @classmethod
    def for_floor(cls, floor: float, frequency_hz: float, rng: random.Random) -> FlickerNoise:
        sigma = floor * frequency_hz / _OU_DECADE_ADEV
        noise = cls(sigma)
        noise.values = [rng.gauss(0.0, sigma) for _ in _FLICKER_TIME_CONSTANTS]
        return noise

    def step(self, dt: float, normal: Callable[[], float]) -> None:
        """Exact OU update over dt (steps compose, so callers may batch them)."""
        if self.sigma == 0.0 or dt <= 0.0:
            return
        known_dt, known_sigma, factors = self._step
        if dt != known_dt or self.sigma != known_sigma:
            decays = [math.exp(-dt / tau) for tau in _FLICKER_TIME_CONSTANTS]
            factors = tuple((a, self.sigma * math.sqrt(1 - a * a)) for a in decays)
            self._step = (dt, self.sigma, factors)
        values = self.values
        for i, (a, kick) in enumerate(factors):
            values[i] = values[i] * a + kick * normal()

    @property
    def value(self) -> float:
        return sum(self.values)


class NormalStream:
    """Standard normal draws from numpy in blocks: ~20× cheaper per draw than random.gauss."""

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng = rng
        self._block = block
        self._buffer: list[float] = []

    def __call__(self) -> float:
        if not self._buffer:
            self._buffer = self._rng.standard_normal(self._block).tolist()
        return self._buffer.pop()

    def draws(self, n: int) -> list[float]:
        """`n` draws at once: the same values, in the same order, as `n` calls."""
        buffer = self._buffer
        if n > len(buffer):
            return [self() for _ in range(n)]
        cut = len(buffer) - n
        out = buffer[cut:]
        del buffer[cut:]
        out.reverse()
        return out
