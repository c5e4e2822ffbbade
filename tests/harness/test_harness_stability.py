"""ADEV statistics on synthetic white frequency noise, where the answer is known."""

import math

import allantools
import numpy as np
import pytest

from ionpilot.harness.stability import allan, loglog_slope, octave_taus, ratio_band


def test_band_reproduces_the_reference_figure():
    # REFERENCE §1: 99.99 % band of σ̂/σ for N = 10⁴ points at m = 100 is 0.78–1.23
    edf = allantools.edf_greenhall(alpha=0, d=2, m=100, N=10001, overlapping=True)
    assert edf == pytest.approx(1.45 * 10_000 / 100, rel=0.05)
    lo, hi = ratio_band(edf, 0.9999)
    assert lo == pytest.approx(0.78, abs=0.01)
    assert hi == pytest.approx(1.23, abs=0.01)
    assert ratio_band(edf, 0.9999, excess=0.15)[1] == pytest.approx(1.15 * hi)


def test_white_fm_adev_slope_and_intervals():
    rng = np.random.default_rng(7)
    sigma1 = 1e-15
    rate = 0.5
    y = sigma1 * math.sqrt(rate) * rng.standard_normal(20_000)  # σ_y(τ) = σ1/√τ
    result = allan(y, rate)
    assert result.n_averages[-1] >= 10
    truth = [sigma1 / math.sqrt(t) for t in result.tau_s]
    inside = [lo <= s <= hi for lo, s, hi in zip(result.ci_low, truth, result.ci_high, strict=True)]
    assert sum(inside) >= len(inside) - 3  # 68 % intervals
    assert loglog_slope(result.tau_s, result.sigma, result.edf) == pytest.approx(-0.5, abs=0.05)


def test_octave_taus_keep_ten_averages():
    taus = octave_taus(1000, 0.5)
    assert taus[0] == 2.0
    assert 1000 // round(taus[-1] * 0.5) >= 10
    assert octave_taus(5, 1.0) == []
