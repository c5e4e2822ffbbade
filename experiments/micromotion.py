"""Micromotion compensation: the DC electrode voltage at which the ion's fluorescence peaks.

Excess micromotion (modulation index β, proportional to the residual field E − k·V) lowers the
cooling fluorescence by J0(β)² ≈ 1 − β²/2: near compensation the counts are a downward parabola
in the electrode voltage whose vertex is the compensating voltage. The scan pauses while the
daemon recovers (see `scan`), the fit's uncertainty comes from its covariance, and the dataset
(with the fit in its metadata) and a PNG land in the lab's data_dir.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qcodes.dataset import load_or_create_experiment
from qcodes.parameters import Parameter

from ionpilot.experiments.fitting import Fit, fit_curve
from ionpilot.experiments.scan import Suspender, daemon_status_reader, scan
from ionpilot.experiments.station import qcodes_station

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = ["MicromotionSettings", "micromotion", "parabola"]

Progress = Callable[[int, int], None]  # (points done, points planned)


@dataclass(frozen=True)
class MicromotionSettings:
    """What the experiment sweeps: electrode channel, voltages (V), points, settle time (s)."""

    electrode: str = "ch01"
    start: float = -0.4
    stop: float = 0.4
    points: int = 9
    settle: float = 0.05

    def check(self) -> None:
        """ValueError naming the setting and what is allowed."""
        if self.electrode not in {f"ch{i:02d}" for i in range(1, 25)}:
            raise ValueError(f"--electrode {self.electrode!r}: a QDAC channel ch01..ch24")
        if not 5 <= self.points <= 201:
            raise ValueError(f"--points {self.points}: 5..201 (a parabola needs 3, noise more)")
        if not self.start < self.stop:
            raise ValueError(f"--start {self.start:g} must be below --stop {self.stop:g}")
        if not 0.0 <= self.settle <= 10.0:
            raise ValueError(f"--settle {self.settle:g} s: 0..10 s")


def parabola(v: npt.NDArray[np.float64], peak: float, v0: float, curvature: float) -> Any:
    return peak - curvature * (v - v0) ** 2


def micromotion(
    lab: Lab, settings: MicromotionSettings, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the scan, fit, plot; the result (fit with uncertainties, run id, files)."""
    settings.check()
    station = qcodes_station(lab, ["dc_electrodes", "pulser"])
    channel = getattr(station.dc_electrodes, settings.electrode)
    voltage = channel.voltage
    counts = station.pulser.counts

    def settled_counts() -> Any:
        time.sleep(settings.settle)  # the electrode's slew and the ion's response
        return counts.get()

    fluorescence = Parameter(
        "fluorescence", label="fluorescence counts", unit="", get_cmd=settled_counts, set_cmd=False
    )
    values = list(np.linspace(settings.start, settings.stop, settings.points))
    before = voltage.get()
    experiment = load_or_create_experiment("micromotion", sample_name=lab.config.lab.name)
    try:
        result = scan(
            voltage,
            values,
            [fluorescence],
            Suspender(daemon_status_reader(lab)),
            name=f"micromotion {settings.electrode}",
            after_point=(lambda i: progress(i + 1, len(values))) if progress else None,
            experiment=experiment,
        )
    finally:
        voltage.set(before)
    data = result.dataset.get_parameter_data()["fluorescence"]
    v = np.asarray(data[voltage.full_name], dtype=float)
    y = np.asarray(data["fluorescence"], dtype=float)
    span = settings.stop - settings.start
    guess = [float(y.max()), float(v[int(np.argmax(y))]), max(float(np.ptp(y)), 1.0) / span**2]
    fit = fit_curve(parabola, v, y, ["peak", "v0", "curvature"], guess)
    if fit.converged and not (fit.values["curvature"] > 0):
        fit = Fit(False, fit.values, fit.errors, fit.reduced_chi2, "no fluorescence maximum")
    result.dataset.add_metadata("ionpilot_fit", json.dumps(fit.as_dict()))
    database = Path(str(result.dataset.path_to_db))
    png = database.parent / f"run{result.dataset.captured_run_id}.png"
    plot(v, y, fit, settings, png)
    out: dict[str, Any] = {
        "experiment": "micromotion",
        "run_id": result.dataset.captured_run_id,
        "database": str(database),
        "png": str(png),
        "points": len(values),
        "pauses": len(result.pauses),
        "fit": fit.as_dict(),
    }
    if fit.converged:
        out["compensation_voltage_V"] = fit.values["v0"]
        out["compensation_voltage_error_V"] = fit.errors["v0"]
    return out


def plot(
    v: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    fit: Fit,
    settings: MicromotionSettings,
    path: Path,
) -> None:
    """The counts and the fitted parabola, as a PNG beside the dataset."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    axes.plot(v, y, "o", label="fluorescence")
    if fit.converged:
        fine = np.linspace(v.min(), v.max(), 200)
        params = fit.values
        label = f"V0 = {params['v0']:.4f} ± {fit.errors['v0']:.4f} V"
        axes.plot(
            fine, parabola(fine, params["peak"], params["v0"], params["curvature"]), label=label
        )
    else:
        axes.set_title(fit.message[:80])
    axes.set_xlabel(f"dc_electrodes {settings.electrode} voltage (V)")
    axes.set_ylabel("counts per gate")
    axes.legend()
    figure.savefig(path, dpi=100)
