"""Frequency-stability statistics of a locked clock (REFERENCE.md §1): overlapping Allan
deviation of fractional-frequency data, χ² confidence intervals from Greenhall's equivalent
degrees of freedom, and the slope check."""

from __future__ import annotations

import math
from dataclasses import dataclass

import allantools
import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]
ONE_SIGMA = math.erf(1 / math.sqrt(2))


@dataclass(frozen=True)
class AllanResult:
    """ADEV at octave-spaced averaging times with χ² intervals (level `ci_level`)."""

    tau_s: list[float]
    sigma: list[float]
    ci_low: list[float]
    ci_high: list[float]
    edf: list[float]
    n_averages: list[int]  # non-overlapping averages N/m at each tau
    ci_level: float


def octave_taus(n_points: int, rate_hz: float, min_averages: int = 10) -> list[float]:
    """τ = 2^k / rate while at least `min_averages` non-overlapping averages fit."""
    taus = []
    m = 1
    while n_points // m >= min_averages:
        taus.append(m / rate_hz)
        m *= 2
    return taus


def allan(y: FloatArray, rate_hz: float, ci_level: float = ONE_SIGMA) -> AllanResult:
    """Overlapping ADEV of fractional frequency `y` sampled at `rate_hz` (white-FM edf)."""
    n = len(y)
    taus_in = octave_taus(n, rate_hz)
    if not taus_in:
        raise ValueError(f"{n} samples are too few for an Allan deviation")
    taus, devs, _, _ = allantools.oadev(y, rate=rate_hz, data_type="freq", taus=taus_in)
    low, high, edfs, navg = [], [], [], []
    for tau, dev in zip(taus, devs, strict=True):
        m = round(tau * rate_hz)
        # white FM (alpha = 0), Allan variance (d = 2), overlapping; N counts phase points
        edf = float(allantools.edf_greenhall(alpha=0, d=2, m=m, N=n + 1, overlapping=True))
        lo, hi = allantools.confidence_interval(dev, edf, ci=ci_level)
        low.append(float(lo))
        high.append(float(hi))
        edfs.append(edf)
        navg.append(n // m)
    return AllanResult(
        [float(t) for t in taus], [float(d) for d in devs], low, high, edfs, navg, ci_level
    )


def ratio_band(edf: float, level: float, excess: float = 0.0) -> tuple[float, float]:
    """Where σ̂/σ falls with probability `level` for a χ² estimate with `edf` degrees of
    freedom, the upper edge widened by `excess` (servo excess over the QPN limit)."""
    tail = (1 - level) / 2
    lo = math.sqrt(stats.chi2.ppf(tail, edf) / edf)
    hi = math.sqrt(stats.chi2.ppf(1 - tail, edf) / edf)
    return lo, hi * (1 + excess)


def loglog_slope(tau_s: list[float], sigma: list[float], edf: list[float] | None = None) -> float:
    """Slope of log σ against log τ (−½ for white FM), weighted by each point's precision
    (the standard deviation of ln σ̂ is ≈ 1/√(2·edf)) when `edf` is given."""
    if len(tau_s) < 2:
        return math.nan
    weights = None if edf is None else np.sqrt(2 * np.asarray(edf))
    slope, _ = np.polyfit(np.log10(tau_s), np.log10(sigma), 1, w=weights)
    return float(slope)


def white_fm_coefficient(tau_s: list[float], sigma: list[float], edf: list[float]) -> float:
    """σ_y(τ)·√τ of a white-FM record, averaged over the given taus in variance with each
    point weighted by its degrees of freedom (steadier than the longest τ alone)."""
    weights = np.asarray(edf)
    variances = np.asarray(sigma) ** 2 * np.asarray(tau_s)
    return float(math.sqrt(np.sum(weights * variances) / np.sum(weights)))


def mean_uncertainty(coefficient: float, total_s: float) -> float:
    """Statistical uncertainty of the mean fractional frequency over a white-FM record of
    length T: σ_y(T) = coefficient/√T (for white FM the variance of the mean is σ_y²(T))."""
    return coefficient / math.sqrt(total_s)
