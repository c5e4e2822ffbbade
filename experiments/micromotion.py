"""Micromotion compensation: the DC electrode voltage at which the ion's fluorescence peaks.

Excess micromotion (modulation index β, proportional to the residual field E − k·V) lowers the
cooling fluorescence by J0(β)² ≈ 1 − β²/2: near compensation the counts are a downward parabola
in the electrode voltage whose vertex is the compensating voltage. The scan pauses while the
daemon recovers (see `scan`), the fit's uncertainty comes from its covariance, and the dataset
(with the fit in its metadata) and a PNG land in the lab's data_dir.

Each point's fluorescence is its own run of cooling windows on the pulse controller (built by
the sequencer), played once the electrode's output has reached the set voltage: the QDAC ramps
each change at the channel's slew rate (10 V/s in the simulated lab, 40 ms for 0.4 V), so a count
sent as soon as the set is acknowledged sees part of the ramp, or the old voltage (the first
point of a scan read the fluorescence of 0 V: v0 biased along the scan, its error up to 0.4 V).
No counting window is shared with the daemon (whose presence checks change the pulser's
`count_duration` at any time). The voltages are visited outside in (`scan.outside_in`): in a
monotonic sweep the cooling lock's steps become a slope across the scan and move the vertex by
several of its error bars (39 % of simulated scans beyond 3σ, against 1 % outside in).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qcodes.dataset import load_or_create_experiment
from qcodes.parameters import Parameter

from ionpilot.experiments.pulses import count_fluorescence
from ionpilot.experiments.scan import Suspender, daemon_status_reader, outside_in, scan
from ionpilot.experiments.standard import Progress, finish, fit_and_check
from ionpilot.experiments.station import qcodes_station

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = ["ElectrodeNotSettled", "MicromotionSettings", "micromotion", "parabola", "wait_settled"]


SETTLE_TOLERANCE_V = 1e-4  # the output counts as settled within this of the set voltage
SETTLE_TIMEOUT_S = 10.0  # a ramp of the whole scan at the slowest allowed rate is much longer:
# the scan refuses to wait that long rather than count on a moving ion


class ElectrodeNotSettled(RuntimeError):
    """The electrode's present output did not reach the set voltage in time."""


def wait_settled(
    present: Callable[[], float],
    target: float,
    *,
    what: str,
    timeout_s: float = SETTLE_TIMEOUT_S,
    poll_s: float = 0.02,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait until `present()` (the instrument's output now, not its set-point) is within
    SETTLE_TOLERANCE_V of `target`; the seconds waited. ElectrodeNotSettled after `timeout_s`."""
    start = clock()
    while True:
        reading = present()
        if abs(reading - target) <= SETTLE_TOLERANCE_V:
            return clock() - start
        if clock() - start > timeout_s:
            raise ElectrodeNotSettled(
                f"{what} reads {reading:.6g} V, {timeout_s:g} s after it was set to "
                f"{target:.6g} V (slew rate too low, or the output is not following)"
            )
        sleep(poll_s)


@dataclass(frozen=True)
class MicromotionSettings:
    """What the experiment sweeps: electrode channel, voltages (V), points; each point counts
    `shots` cooling windows of `window` (s)."""

    electrode: str = "ch01"
    start: float = -0.4
    stop: float = 0.4
    points: int = 9
    window: float = 0.01
    shots: int = 20

    def check(self) -> None:
        """ValueError naming the setting and what is allowed."""
        if self.electrode not in {f"ch{i:02d}" for i in range(1, 25)}:
            raise ValueError(f"--electrode {self.electrode!r}: a QDAC channel ch01..ch24")
        if not 5 <= self.points <= 201:
            raise ValueError(f"--points {self.points}: 5..201 (a parabola needs 3, noise more)")
        if not self.start < self.stop:
            raise ValueError(f"--start {self.start:g} must be below --stop {self.stop:g}")
        if not 1e-4 <= self.window <= 0.1:
            raise ValueError(f"--window {self.window:g} s: 0.1..100 ms")
        if not 1 <= self.shots <= 1000 or self.shots * self.window > 10.0:
            raise ValueError(f"--shots {self.shots}: 1..1000, at most 10 s of counting per point")


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
    device = lab.config.device

    def fluorescence_rate() -> float:
        target = voltage.cache.get(get_if_invalid=False)
        if target is not None:  # the scan set it: count only once the QDAC's ramp has ended
            wait_settled(
                channel.voltage_last.get,
                float(target),
                what=f"dc_electrodes {settings.electrode}",
            )
        return count_fluorescence(lab, device, settings.window, settings.shots)

    fluorescence = Parameter(
        "fluorescence", label="fluorescence", unit="1/s", get_cmd=fluorescence_rate, set_cmd=False
    )
    # outside in: the cooling lock's steps (a few % every 5 s) must not tilt the parabola
    values = outside_in(
        [float(v) for v in np.linspace(settings.start, settings.stop, settings.points)]
    )
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
    counting_s = settings.shots * settings.window
    poisson = np.sqrt(np.maximum(y, 1.0) / counting_s)  # a rate from N photons: sqrt(N)/T
    fit = fit_and_check(
        parabola,
        v,
        y,
        ["peak", "v0", "curvature"],
        guess,
        check=lambda f: "" if f.values["curvature"] > 0 else "no fluorescence maximum",
        sigma=poisson,
    )
    derived: dict[str, float] = {}
    if fit.converged:
        derived = {
            "compensation_voltage_V": fit.values["v0"],
            "compensation_voltage_error_V": fit.errors["v0"],
        }
    return finish(
        lab,
        "micromotion",
        result,
        v,
        y,
        fit=fit,
        model=parabola,
        x_label=f"dc_electrodes {settings.electrode} voltage (V)",
        y_label="fluorescence (counts/s)",
        derived=derived,
    )
