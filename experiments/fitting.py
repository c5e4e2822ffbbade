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

__all__ = ["Fit", "fit_curve"]

Model = Callable[..., Any]


@dataclass(frozen=True)
class Fit:
    """Fitted values and their 1σ uncertainties (from the covariance, scaled by the residuals
    as curve_fit does with absolute_sigma=False), or why the fit failed."""

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


def fit_curve(
    model: Model,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    names: Sequence[str],
    guess: Sequence[float],
) -> Fit:
    """Fit `model(x, *params)` to (x, y) from `guess`; a Fit that says whether it converged."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) <= len(names):
        return Fit(False, message=f"{len(xs)} points cannot fix {len(names)} parameters")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            popt, pcov = curve_fit(model, xs, ys, p0=list(guess), maxfev=5000)
    except (RuntimeError, OptimizeWarning, ValueError) as exc:
        return Fit(False, message=f"fit did not converge: {exc}")
    errors = np.sqrt(np.diag(pcov))
    if not np.all(np.isfinite(errors)):
        return Fit(False, message="fit did not converge: covariance could not be estimated")
    residuals = ys - model(xs, *popt)
    chi2 = float(np.sum(residuals**2) / (len(xs) - len(names)))
    return Fit(
        True,
        {n: float(v) for n, v in zip(names, popt, strict=True)},
        {n: float(e) for n, e in zip(names, errors, strict=True)},
        chi2,
    )
