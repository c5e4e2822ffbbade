"""Cooling-laser detuning scan: the ion's fluorescence against the 369 nm laser's frequency.

The cooling laser is borrowed from its wavemeter lock (which lets go of the piezo meanwhile
and takes it back, from where it was, afterwards). The piezo steps the laser over offsets from
the lock's target, on the red side only (blue of resonance the ion heats and is lost); the
wavemeter reads each point's frequency, and each point's fluorescence is its own run of
cooling windows on the pulse controller. The scattering rate is a Lorentzian in the detuning:
its centre is the resonance, so the lock's target sits `cooling_detuning` = target − resonance
from it (recorded as `cooling_detuning`), and its width is the power-broadened linewidth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qcodes.dataset import load_or_create_experiment
from qcodes.parameters import Parameter

from ionpilot.experiments.clock_laser import borrowed_laser
from ionpilot.experiments.pulses import count_fluorescence
from ionpilot.experiments.scan import Suspender, daemon_status_reader, scan
from ionpilot.experiments.standard import Progress, Recorded, finish, fit_and_check
from ionpilot.experiments.station import qcodes_station

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = ["CoolingScanSettings", "cooling_scan", "lorentzian"]

CALIBRATION_STEP_V = -0.05  # piezo step that measures the tuning (≈ -20 MHz on a DL pro: red)
# wavemeter readings averaged at each end of that step: one reading is ±1.6 MHz (0.002 ppm), so
# a single pair set the scan's frequencies 30 % and 4 MHz off, and the top point blue of the
# resonance (the ion heats: one scan in eight had χ² ≈ 1,500 and no line); four give ±0.8 MHz
# at each end and the slope to 6 %
CALIBRATION_READINGS = 4


@dataclass(frozen=True)
class CoolingScanSettings:
    """Offsets (Hz) from the lock's target, from `start` to `stop` (red of resonance: `stop` at
    most 8 MHz above the target); each point counts `shots` windows of `window` (s)."""

    lock: str = "cooling"
    start: float = -20e6
    stop: float = 5e6
    points: int = 11
    window: float = 0.01
    shots: int = 20

    def check(self) -> None:
        if not 6 <= self.points <= 101:
            raise ValueError(f"--points {self.points}: 6..101")
        if not -200e6 <= self.start < self.stop <= 8e6:
            raise ValueError(
                f"--start {self.start:g} Hz, --stop {self.stop:g} Hz: -200 MHz <= start < stop "
                "<= +8 MHz from the lock's target (the target sits red of resonance; blue of it "
                "the ion heats and is lost)"
            )
        if not 1e-4 <= self.window <= 0.1 or not 1 <= self.shots <= 1000:
            raise ValueError(f"--window {self.window:g} s: 0.1..100 ms; --shots 1..1000")


def lorentzian(x: npt.NDArray[np.float64], peak: float, centre: float, width: float) -> Any:
    """Scattering against the laser's frequency: FWHM `width` about `centre` (the counts'
    background, ~1 % of the signal here, is left in the peak's tails)."""
    return peak / (1 + (2 * (x - centre) / width) ** 2)


def cooling_scan(
    lab: Lab, settings: CoolingScanSettings, progress: Progress | None = None
) -> dict[str, Any]:
    """The cooling transition's centre relative to the lock's target, and its width."""
    settings.check()
    aux = lab.config.servo.aux_locks.get(settings.lock)
    if aux is None:
        known = ", ".join(lab.config.servo.aux_locks) or "none"
        raise ValueError(f"--lock {settings.lock!r}: the lab's wavemeter locks are {known}")
    device = lab.config.device
    laser = lab.instrument(aux.laser)

    def wavemeter_offset() -> float:
        reply = lab.call(
            aux.wavemeter, "call", {"name": "measure", "args": [aux.wavemeter_channel]}
        )
        if not isinstance(reply, int | float) or isinstance(reply, bool):
            raise ValueError(f"{aux.wavemeter} channel {aux.wavemeter_channel}: no reading")
        return float(reply) - aux.target

    owner = f"experiment cooling-scan ({settings.lock})"
    # the clock lock holds over too: its shots' cooling windows would see the dimmed
    # fluorescence as an ion leaving
    with borrowed_laser(lab, "clock", owner) as loan, borrowed_laser(lab, settings.lock, owner):
        start_v = laser.get("piezo_voltage")
        if not isinstance(start_v, int | float) or isinstance(start_v, bool):
            raise ValueError(f"{aux.laser}: no piezo voltage reading ({start_v!r})")
        piezo0 = float(start_v)

        def mean_offset() -> float:
            return float(np.mean([wavemeter_offset() for _ in range(CALIBRATION_READINGS)]))

        f0 = mean_offset()
        laser.set("piezo_voltage", piezo0 + CALIBRATION_STEP_V)
        slope = (mean_offset() - f0) / CALIBRATION_STEP_V  # Hz per volt, sign included
        laser.set("piezo_voltage", piezo0)
        if abs(slope) < 1e6:
            raise ValueError(f"{aux.laser}: the piezo does not tune the laser ({slope:g} Hz/V)")
        qcodes_station(lab, [device.pulse_controller])
        setpoint = Parameter(
            "cooling_offset",
            label=f"{settings.lock} laser offset from its lock target",
            unit="Hz",
            set_cmd=lambda hz: laser.set("piezo_voltage", piezo0 + (float(hz) - f0) / slope),
        )
        measured = Parameter(
            "wavemeter_offset",
            label="wavemeter reading − lock target",
            unit="Hz",
            get_cmd=wavemeter_offset,
        )
        fluorescence = Parameter(
            "fluorescence",
            label="fluorescence",
            unit="1/s",
            get_cmd=lambda: count_fluorescence(
                lab, device, settings.window, settings.shots, loan.lease
            ),
        )
        # in a fixed random order: a slow drift of the rest of the lab (the repump's lock still
        # settling, say) then scatters the points, which the fit's χ² shows, instead of
        # tilting the line shape, which it would not
        ordered = np.linspace(settings.start, settings.stop, settings.points)
        values = list(np.random.default_rng(0).permutation(ordered))
        exp = load_or_create_experiment("cooling-scan", sample_name=lab.config.lab.name)
        try:
            result = scan(
                setpoint,
                values,
                [measured, fluorescence],
                Suspender(daemon_status_reader(lab)),
                name="cooling-scan",
                after_point=(lambda i: progress(i + 1, len(values))) if progress else None,
                experiment=exp,
            )
        finally:
            laser.set("piezo_voltage", piezo0)  # the lock takes it back from where it was
    data = result.dataset.get_parameter_data()
    nominal = np.asarray(data["fluorescence"]["cooling_offset"], dtype=float)
    read = np.asarray(data["wavemeter_offset"]["wavemeter_offset"], dtype=float)
    y = np.asarray(data["fluorescence"]["fluorescence"], dtype=float)
    # the piezo tunes linearly over tens of MHz: the frequency of each point is the straight line
    # through all the wavemeter's readings (each alone is ±2 MHz), at that point's piezo voltage
    line, line_cov = np.polyfit(nominal, read, 1, cov=True)
    x = np.polyval(line, nominal)
    result.dataset.add_metadata("ionpilot_wavemeter_line", repr([float(c) for c in line]))
    poisson = np.sqrt(np.maximum(y, 1.0) / (settings.shots * settings.window))
    top = int(np.argmax(y))
    guess = [2 * float(y[top]), float(x[top]) + 10e6, 30e6]
    fit = fit_and_check(
        lorentzian,
        x,
        y,
        ["peak", "centre", "width"],
        guess,
        check=lambda f: "" if f.values["peak"] > 0 and f.values["width"] > 0 else "no line",
        sigma=poisson,
    )
    derived: dict[str, float] = {}
    cals: list[Recorded] = []
    if fit.converged:
        centre = fit.values["centre"]
        # the frequency scale's own uncertainty (the line through the readings) at the centre
        at = (centre - line[1]) / line[0]  # the nominal offset the centre corresponds to
        scale_var = at**2 * line_cov[0, 0] + line_cov[1, 1] + 2 * at * line_cov[0, 1]
        error = float(np.hypot(fit.errors["centre"], np.sqrt(max(scale_var, 0.0))))
        derived = {
            "resonance_offset_hz": centre,
            "cooling_detuning_hz": -centre,
            "cooling_detuning_error_hz": error,
            "fit_error_hz": fit.errors["centre"],
            "linewidth_hz": fit.values["width"],
            "linewidth_error_hz": fit.errors["width"],
            "tuning_hz_per_v": slope,
        }
        cals = [Recorded("cooling_detuning", -centre, error, "Hz")]
    return finish(
        lab,
        "cooling-scan",
        result,
        x,
        y,
        fit=fit,
        model=lorentzian,
        x_label=f"{settings.lock} laser − lock target (MHz)",
        y_label="fluorescence (counts/s)",
        derived=derived,
        calibrations=cals,
        x_scale=1e-6,
    )
