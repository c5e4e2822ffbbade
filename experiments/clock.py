"""Experiments on the clock transition, with the clock laser borrowed from the lock.

* `rabi`: excitation against the probe duration at a fixed amplitude, on the line the lock's
  hold-over steers to: P = c + A·sin²(π t / 2t_π) gives the π time.
* `clock-line`: a π pulse of `probe_time` stepped across the line: the Rabi line shape gives
  its centre (on the AOM and, through the comb's last reading, optical) and its width.
* `ramsey`: two π/2 pulses around a free evolution, detuned on purpose: fringes at the
  detuning, their decay gives T2*.

Every probe is a schedule built with the sequencer's program builders and run as a job of the
sequencer service; every point is taken relative to where the lock's hold-over puts the line
at that moment, so the laser's drift does not smear the scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qcodes.parameters import Parameter

from ionpilot.experiments.clock_laser import clock_laser
from ionpilot.experiments.fitting import Fit, binomial_sigma
from ionpilot.experiments.pulses import SequencerJobs, clock_probe, excitation
from ionpilot.experiments.standard import (
    Progress,
    Recorded,
    finish,
    fit_and_check,
    run_scan,
)

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = [
    "ClockLineSettings",
    "RabiSettings",
    "RamseySettings",
    "clock_line",
    "rabi",
    "rabi_flop",
    "rabi_line",
    "ramsey",
    "ramsey_fringe",
]


def _check_shots(shots: int) -> None:
    if not 5 <= shots <= 10_000:
        raise ValueError(f"--shots {shots}: 5..10000 per point")


def _check_points(points: int, least: int) -> None:
    if not least <= points <= 201:
        raise ValueError(f"--points {points}: {least}..201")


# ------------------------------------------------------------------------------------- Rabi


@dataclass(frozen=True)
class RabiSettings:
    """Probe durations (s) from `start` to `stop`, the clock pulse's amplitude (0..1), shots per
    point."""

    start: float = 1e-3
    stop: float = 36e-3
    points: int = 12
    shots: int = 30
    amplitude: float = 1.0

    def check(self) -> None:
        _check_points(self.points, 5)
        _check_shots(self.shots)
        if not 0 < self.start < self.stop <= 1.0:
            raise ValueError(
                f"--start {self.start:g} s, --stop {self.stop:g} s: 0 < start < stop <= 1 s"
            )
        if not 0 < self.amplitude <= 1.0:
            raise ValueError(f"--amplitude {self.amplitude:g}: 0 < amplitude <= 1")


def rabi_flop(t: npt.NDArray[np.float64], pi_time: float, contrast: float, offset: float) -> Any:
    return offset + contrast * np.sin(np.pi * t / (2 * pi_time)) ** 2


def _probe_parameter(name: str, label: str, measure: Any) -> Parameter:
    return Parameter(name, label=label, unit="", get_cmd=measure, set_cmd=False)


def rabi(lab: Lab, settings: RabiSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Rabi flopping on the clock line; the π time at `amplitude`, recorded as `pi_time`."""
    settings.check()
    device = lab.config.device
    jobs = SequencerJobs(lab, client="experiment rabi")
    duration = Parameter("probe_duration", label="probe duration", unit="s", set_cmd=None)
    duration.set(settings.start)
    values = list(np.linspace(settings.start, settings.stop, settings.points))
    with clock_laser(lab, "experiment rabi") as loan:

        def measure() -> float:
            pulse = (0.0, float(duration.get()), settings.amplitude, 0.0)
            schedule = clock_probe(device, [pulse], loan.line_aom_hz())
            return excitation(jobs.run_schedule(schedule, settings.shots, loan.lease))

        probe = _probe_parameter("excitation", "clock excitation", measure)
        result, x, y = run_scan(lab, "rabi", duration, values, probe, progress=progress)
    guess_rabi = device.channels[device.clock_channel].rabi_frequency * settings.amplitude
    guess = [1.0 / (2 * guess_rabi), float(np.ptp(y)) or 0.9, float(y.min())]

    def sane(fit: Fit) -> str:
        v = fit.values
        if not settings.start / 4 < v["pi_time"] < 4 * settings.stop or v["contrast"] <= 0.2:
            return f"no Rabi flop in the data (π time {v['pi_time']:.3g} s, contrast {v['contrast']:.2f})"
        return ""

    fit = fit_and_check(
        rabi_flop,
        x,
        y,
        ["pi_time", "contrast", "offset"],
        guess,
        check=sane,
        sigma=binomial_sigma(y, settings.shots),
    )
    derived: dict[str, float] = {}
    cals: list[Recorded] = []
    if fit.converged:
        derived = {
            "pi_time_s": fit.values["pi_time"],
            "pi_time_error_s": fit.errors["pi_time"],
            "amplitude": settings.amplitude,
        }
        cals = [Recorded("pi_time", fit.values["pi_time"], fit.errors["pi_time"], "s")]
    return finish(
        lab,
        "rabi",
        result,
        x,
        y,
        fit=fit,
        model=rabi_flop,
        x_label="probe duration (ms)",
        y_label="excitation",
        derived=derived,
        calibrations=cals,
        x_scale=1e3,
    )


# ------------------------------------------------------------------------------- clock line


@dataclass(frozen=True)
class ClockLineSettings:
    """A π pulse of `probe_time` (s) stepped over ±`span`/2 (Hz) around the lock's line."""

    probe_time: float = 20e-3
    span: float = 80.0
    points: int = 11
    shots: int = 25

    def check(self) -> None:
        _check_points(self.points, 5)
        _check_shots(self.shots)
        if not 1e-3 <= self.probe_time <= 1.0:
            raise ValueError(f"--probe_time {self.probe_time:g} s: 1 ms..1 s")
        if not 0 < self.span <= 1e6:
            raise ValueError(f"--span {self.span:g} Hz: 0..1 MHz")


def rabi_line(
    d: npt.NDArray[np.float64], centre: float, rabi_hz: float, contrast: float, probe_s: float
) -> Any:
    """Excitation of a pulse of `probe_s` at Rabi frequency `rabi_hz`, detuned by d − centre."""
    g2 = rabi_hz**2 + (d - centre) ** 2
    return contrast * rabi_hz**2 / g2 * np.sin(np.pi * probe_s * np.sqrt(g2)) ** 2


def clock_line(
    lab: Lab, settings: ClockLineSettings, progress: Progress | None = None
) -> dict[str, Any]:
    """The clock line's centre (AOM Hz, and optical through the comb) and its width (FWHM)."""
    settings.check()
    device = lab.config.device
    channel = device.channels[device.clock_channel]
    amplitude = 1.0 / (2 * channel.rabi_frequency * settings.probe_time)
    if amplitude > 1.0:
        shortest = 1.0 / (2 * channel.rabi_frequency)
        raise ValueError(
            f"--probe_time {settings.probe_time:g} s: a π pulse needs at least {shortest:g} s "
            "at full amplitude"
        )
    jobs = SequencerJobs(lab, client="experiment clock-line")
    detuning = Parameter("probe_detuning", label="probe detuning", unit="Hz", set_cmd=None)
    detuning.set(0.0)
    half = settings.span / 2
    values = list(np.linspace(-half, half, settings.points))
    steers: list[float] = []
    with clock_laser(lab, "experiment clock-line") as loan:

        def measure() -> float:
            line = loan.line_aom_hz()
            steers.append(line)
            pulse = (0.0, settings.probe_time, amplitude, 0.0)
            schedule = clock_probe(device, [pulse], line + float(detuning.get()))
            return excitation(jobs.run_schedule(schedule, settings.shots, loan.lease))

        probe = _probe_parameter("excitation", "clock excitation", measure)
        result, x, y = run_scan(lab, "clock-line", detuning, values, probe, progress=progress)
        optical = loan.optical_frequency_hz()

    def model(d: npt.NDArray[np.float64], centre: float, rabi_hz: float, contrast: float) -> Any:
        return rabi_line(d, centre, rabi_hz, contrast, settings.probe_time)

    peak = float(x[int(np.argmax(y))]) if len(y) else 0.0
    guess = [peak, 1.0 / (2 * settings.probe_time), max(float(y.max()), 0.1)]

    def sane(fit: Fit) -> str:
        v = fit.values
        if abs(v["centre"]) > settings.span or v["contrast"] <= 0.1:
            return (
                f"no line in the scan (centre {v['centre']:.3g} Hz, contrast {v['contrast']:.2f})"
            )
        return ""

    fit = fit_and_check(
        model,
        x,
        y,
        ["centre", "rabi_hz", "contrast"],
        guess,
        check=sane,
        sigma=binomial_sigma(y, settings.shots),
    )
    derived: dict[str, float] = {}
    cals: list[Recorded] = []
    if fit.converged:
        offset, offset_error = fit.values["centre"], fit.errors["centre"]
        steer = float(np.mean(steers))
        # FWHM of a pulse of area θ = 2π·Ω·T: the width of the Rabi line shape at half its peak
        width = _fwhm(fit.values["rabi_hz"], settings.probe_time)
        width_error = width * fit.errors["rabi_hz"] / abs(fit.values["rabi_hz"])
        derived = {
            "centre_offset_hz": offset,
            "centre_offset_error_hz": offset_error,
            "centre_aom_hz": steer + offset,
            "centre_aom_error_hz": offset_error,
            "width_hz": width,
            "width_error_hz": width_error,
        }
        if optical is not None:
            derived["centre_optical_hz"] = optical + offset
            derived["centre_optical_error_hz"] = offset_error
            cals = [Recorded("clock_line_centre", optical + offset, offset_error, "Hz")]
    return finish(
        lab,
        "clock-line",
        result,
        x,
        y,
        fit=fit,
        model=model,
        x_label="detuning from the lock's line (Hz)",
        y_label="excitation",
        derived=derived,
        calibrations=cals,
    )


def _fwhm(rabi_hz: float, probe_s: float) -> float:
    """Full width at half maximum of `rabi_line` (found numerically: it depends on the area)."""
    scan = np.linspace(0.0, 20.0 / probe_s, 20001)
    shape = rabi_line(scan, 0.0, abs(rabi_hz), 1.0, probe_s)
    half = shape[0] / 2
    below = np.nonzero(shape < half)[0]
    return 2 * float(scan[below[0]]) if len(below) else math.nan


# ----------------------------------------------------------------------------------- Ramsey


@dataclass(frozen=True)
class RamseySettings:
    """Free-evolution times (s) from `start` to `stop`, π/2 pulses of `pulse_time` (s), the
    probe detuned by `detuning` (Hz) from the lock's line; shots per point."""

    start: float = 1e-3
    stop: float = 0.1
    points: int = 15
    shots: int = 25
    pulse_time: float = 10e-3
    detuning: float = 20.0

    def check(self) -> None:
        _check_points(self.points, 6)
        _check_shots(self.shots)
        if not 0 <= self.start < self.stop <= 10.0:
            raise ValueError(
                f"--start {self.start:g} s, --stop {self.stop:g} s: 0 <= start < stop <= 10 s"
            )
        if not 1e-4 <= self.pulse_time <= 0.1:
            raise ValueError(f"--pulse_time {self.pulse_time:g} s: 0.1..100 ms")
        if not 0 < abs(self.detuning) <= 1e4:
            raise ValueError(f"--detuning {self.detuning:g} Hz: non-zero, at most 10 kHz")


def ramsey_fringe(
    t: npt.NDArray[np.float64], detuning: float, decay: float, contrast: float, phase: float
) -> Any:
    """Excitation after a Ramsey sequence: fringes at `detuning` whose contrast decays at the
    rate `decay` = 1/T2* (1/s)."""
    return 0.5 + 0.5 * contrast * np.exp(-decay * t) * np.cos(2 * np.pi * detuning * t + phase)


def ramsey(lab: Lab, settings: RamseySettings, progress: Progress | None = None) -> dict[str, Any]:
    """Ramsey fringes: the detuning seen by the ion and T2* (recorded as `t2_star` when the
    decay is resolved, at least two standard deviations from none)."""
    settings.check()
    device = lab.config.device
    channel = device.channels[device.clock_channel]
    amplitude = 1.0 / (4 * channel.rabi_frequency * settings.pulse_time)
    if amplitude > 1.0:
        raise ValueError(
            f"--pulse_time {settings.pulse_time:g} s: a π/2 pulse needs at least "
            f"{1.0 / (4 * channel.rabi_frequency):g} s at full amplitude"
        )
    jobs = SequencerJobs(lab, client="experiment ramsey")
    free = Parameter("free_evolution", label="free evolution", unit="s", set_cmd=None)
    free.set(settings.start)
    values = list(np.linspace(settings.start, settings.stop, settings.points))
    with clock_laser(lab, "experiment ramsey") as loan:

        def measure() -> float:
            pulses = [
                (0.0, settings.pulse_time, amplitude, 0.0),
                (float(free.get()), settings.pulse_time, amplitude, 0.0),
            ]
            line = loan.line_aom_hz() + settings.detuning
            schedule = clock_probe(device, pulses, line)
            return excitation(jobs.run_schedule(schedule, settings.shots, loan.lease))

        probe = _probe_parameter("excitation", "clock excitation", measure)
        result, x, y = run_scan(lab, "ramsey", free, values, probe, progress=progress)
    # the free evolution in the schedule starts at the end of the first pulse: the fringe's
    # time axis is the gap; the phase absorbs the pulses' own evolution
    guess = [abs(settings.detuning), 1.0, 0.9, 0.0]
    fit = fit_and_check(
        ramsey_fringe,
        x,
        y,
        ["detuning", "decay", "contrast", "phase"],
        guess,
        check=lambda f: "" if f.values["contrast"] > 0.1 else "no Ramsey fringes in the data",
        sigma=binomial_sigma(y, settings.shots),
    )
    derived: dict[str, float] = {}
    cals: list[Recorded] = []
    if fit.converged:
        decay, decay_error = fit.values["decay"], fit.errors["decay"]
        derived = {
            "detuning_hz": fit.values["detuning"],
            "detuning_error_hz": fit.errors["detuning"],
            "decay_rate_per_s": decay,
            "decay_rate_error_per_s": decay_error,
        }
        if decay > 2 * decay_error:
            derived["t2_star_s"] = 1.0 / decay
            derived["t2_star_error_s"] = decay_error / decay**2
            # a calibration only from a scan that follows the fringes for a whole T2*: a decay
            # inferred from the first part of it is as much the lock's drift as the ion's
            if settings.stop >= 1.0 / decay:
                cals = [Recorded("t2_star", 1.0 / decay, decay_error / decay**2, "s")]
        else:  # the decay is not resolved over the scan: T2* is at least this long
            derived["t2_star_lower_bound_s"] = 1.0 / max(decay + 2 * decay_error, 1e-12)
    return finish(
        lab,
        "ramsey",
        result,
        x,
        y,
        fit=fit,
        model=ramsey_fringe,
        x_label="free evolution (ms)",
        y_label="excitation",
        derived=derived,
        calibrations=cals,
        x_scale=1e3,
    )
