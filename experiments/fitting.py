"""Least-squares fits with covariance-based uncertainties (scipy's `curve_fit`), and a fit that
does not converge said as such rather than raised: the data are stored either way."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeWarning, curve_fit

__all__ = ["Fit", "binomial_sigma", "fit_curve"]

Model = Callable[..., Any]


@dataclass(frozen=True)
class Fit:
    """Fitted values and their 1σ uncertainties (from the covariance: see `fit_curve`), or why
    the fit failed."""

    converged: bool
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    reduced_chi2: float = math.nan
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "converged": self.converged,
            "values": self.values,
            "errors": self.errors,
            "reduced_chi2": None if math.isnan(self.reduced_chi2) else self.reduced_chi2,
            "message": self.message,
        }


def binomial_sigma(fraction: npt.ArrayLike, shots: int) -> npt.NDArray[np.float64]:
    """The standard deviation of a measured fraction of `shots` (projection noise), with the
    fraction taken as (k + 1)/(n + 2) so that 0 and 1 keep a non-zero weight."""
    k = np.asarray(fraction, dtype=float) * shots
    p = (k + 1) / (shots + 2)
    return np.asarray(np.sqrt(p * (1 - p) / shots), dtype=float)


def fit_curve(
    model: Model,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    names: Sequence[str],
    guess: Sequence[float],
    *,
    sigma: npt.ArrayLike | None = None,
) -> Fit:
    """Fit `model(x, *params)` to (x, y) from `guess`; a Fit that says whether it converged.

    With `sigma` (each point's known standard deviation, e.g. projection noise) the
    uncertainties come from that noise, scaled up by sqrt(χ²/dof) when the scatter is larger
    than it explains (a model that misses something), never down; without it, from the
    scatter alone (few points make that estimate itself noisy)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) <= len(names):
        return Fit(False, message=f"{len(xs)} points cannot fix {len(names)} parameters")
    weights = None if sigma is None else np.asarray(sigma, dtype=float)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            popt, pcov = curve_fit(
                model,
                xs,
                ys,
                p0=list(guess),
                sigma=weights,
                absolute_sigma=weights is not None,
                maxfev=5000,
            )
    except (RuntimeError, OptimizeWarning, ValueError) as exc:
        return Fit(False, message=f"fit did not converge: {exc}")
    errors = np.sqrt(np.diag(pcov))
    if not np.all(np.isfinite(errors)):
        return Fit(False, message="fit did not converge: covariance could not be estimated")
    residuals = ys - model(xs, *popt)
    if weights is not None:
        residuals = residuals / weights
    chi2 = float(np.sum(residuals**2) / (len(xs) - len(names)))
    if weights is not None:
        errors = errors * math.sqrt(max(1.0, chi2))
    return Fit(
        True,
        {n: float(v) for n, v in zip(names, popt, strict=True)},
        {n: float(e) for n, e in zip(names, errors, strict=True)},
        chi2,
    )
