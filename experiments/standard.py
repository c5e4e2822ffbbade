"""What every standard experiment does around its physics: a 1-D scan that pauses for faults
into one QCoDeS dataset, a fit with covariance-based uncertainties, the fit in the dataset's
metadata, a PNG beside the database, and calibrations recorded for the device.

A fit that does not converge is said as such (`fit.converged` false, its message) and the data
are stored all the same; no calibration is recorded from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qcodes.dataset import load_or_create_experiment
from qcodes.parameters import Parameter

from ionpilot.experiments.fitting import Fit, Model, fit_curve
from ionpilot.experiments.scan import ScanResult, Suspender, daemon_status_reader, scan
from ionpilot.experiments.station import qcodes_station
from ionpilot.sequencer.calibrations import CalibrationStore

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = ["Progress", "Recorded", "finish", "run_scan"]

Progress = Callable[[int, int], None]  # (points done, points planned)


@dataclass(frozen=True)
class Recorded:
    """A calibration to record from the fit: quantity, value, uncertainty, unit."""

    quantity: str
    value: float
    uncertainty: float
    unit: str


def run_scan(
    lab: Lab,
    experiment: str,
    sweep: Parameter,
    values: Sequence[float],
    measure: Parameter,
    *,
    progress: Progress | None,
    instruments: list[str] | None = None,
    metadata: dict[str, str] | None = None,
) -> tuple[ScanResult, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The scan of `sweep` over `values` reading `measure`, into the lab's database (the
    station's snapshot included); the dataset and its (x, y) columns."""
    qcodes_station(lab, instruments if instruments is not None else ["pulser"])
    exp = load_or_create_experiment(experiment, sample_name=lab.config.lab.name)
    result = scan(
        sweep,
        list(values),
        [measure],
        Suspender(daemon_status_reader(lab)),
        name=experiment,
        after_point=(lambda i: progress(i + 1, len(values))) if progress else None,
        metadata=metadata,
        experiment=exp,
    )
    data = result.dataset.get_parameter_data()[measure.full_name]
    x = np.asarray(data[sweep.full_name], dtype=float)
    y = np.asarray(data[measure.full_name], dtype=float)
    return result, x, y


def fit_and_check(
    model: Model,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    names: Sequence[str],
    guess: Sequence[float],
    *,
    check: Callable[[Fit], str] | None = None,
    sigma: npt.NDArray[np.float64] | None = None,
) -> Fit:
    """`fit_curve` (weighted by `sigma` if known), then `check(fit)` (a physical sanity test:
    '' when it passes)."""
    fit = fit_curve(model, x, y, names, guess, sigma=sigma)
    if fit.converged and check is not None:
        why = check(fit)
        if why:
            return Fit(False, fit.values, fit.errors, fit.reduced_chi2, why)
    return fit


def finish(
    lab: Lab,
    experiment: str,
    result: ScanResult,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    *,
    fit: Fit,
    model: Model,
    x_label: str,
    y_label: str,
    derived: dict[str, float],
    calibrations: Sequence[Recorded] = (),
    x_scale: float = 1.0,
) -> dict[str, Any]:
    """Store the fit (and `derived` values) in the dataset, draw the PNG, record calibrations
    (only from a converged fit); the experiment's result document."""
    dataset = result.dataset
    run_id = dataset.captured_run_id
    dataset.add_metadata("ionpilot_fit", json.dumps({**fit.as_dict(), "derived": derived}))
    database = Path(str(dataset.path_to_db))
    png = database.parent / f"run{run_id}.png"
    plot(x, y, fit, model, png, x_label=x_label, y_label=y_label, x_scale=x_scale)
    recorded: dict[str, Any] = {}
    if fit.converged and calibrations:
        store = CalibrationStore(lab.config.lab.data_dir)
        now = time.time()
        for cal in calibrations:
            entry = store.record(
                cal.quantity,
                cal.value,
                cal.uncertainty,
                unit=cal.unit,
                measured_s=now,
                source=f"experiment {experiment}, run {run_id}",
            )
            recorded[cal.quantity] = entry.to_json()
    return {
        "experiment": experiment,
        "run_id": run_id,
        "database": str(database),
        "png": str(png),
        "points": result.points,
        "pauses": len(result.pauses),
        "fit": fit.as_dict(),
        **(derived if fit.converged else {}),
        "calibrations": recorded,
    }


def plot(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    fit: Fit,
    model: Model,
    path: Path,
    *,
    x_label: str,
    y_label: str,
    x_scale: float = 1.0,
) -> None:
    """The data and the fitted curve (or the reason there is none) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    axes.plot(x * x_scale, y, "o", label="data")
    if fit.converged and len(x) > 1:
        fine = np.linspace(float(x.min()), float(x.max()), 300)
        label = ", ".join(
            f"{k} = {v:.4g} ± {fit.errors[k]:.2g}" for k, v in list(fit.values.items())[:2]
        )
        axes.plot(fine * x_scale, model(fine, *fit.values.values()), label=label)
    else:
        axes.set_title(fit.message[:80])
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=100)
