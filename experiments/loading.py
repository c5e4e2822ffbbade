"""The loading curve: how long the trap takes to load its chain at each oven current.

For each current the trap is emptied, the oven is run at that current with the photoionisation
beam open, and the time until every ion of the chain fluoresces on its own pixel is measured
from cooling counts played through the sequencer's queue (clock jobs). The daemon must not
reload the ion the experiment has just thrown out: the experiment borrows the trap
(`lend_laser laser=trap`, bounded lease), during which the ion-loss playbook does not start and
the lock holds over (user jobs held); given back, the daemon verifies the chain and reloads it
if incomplete.

Emptying (`--empty`): `rf` lowers the RF drive's power below the trap's confinement for
`--empty_s` through its driver, then puts it back (what a lab does; repeated while an ion is
left); `sim_fault` asks the simulator to drop the ions (`sim fault ion_loss`, tests only).

The fit: the chain's load time t(I) = t_ref · exp(−(I − I_ref) / I_s), the oven's flux being
Arrhenius-like, e-fold per I_s; I_ref is the lab's reload current, so t_ref is the `load_time`
calibration with its covariance uncertainty. Each point is weighted by t/√N (an N-ion load at a
steady rate is Erlang-distributed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qcodes.dataset import load_or_create_experiment
from qcodes.parameters import Parameter

from ionpilot.experiments.clock_laser import borrowed_laser
from ionpilot.experiments.fitting import Fit
from ionpilot.experiments.pulses import JobFailed, count_per_ion
from ionpilot.experiments.scan import Suspender, daemon_status_reader, scan
from ionpilot.experiments.standard import Recorded, finish, fit_and_check
from ionpilot.experiments.station import qcodes_station

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = ["LoadingCurveSettings", "loading_curve"]

Progress = Callable[[int, int], None]
EMPTY_STRATEGIES = ("rf", "sim_fault")
OWNER = "experiment loading-curve"


@dataclass(frozen=True)
class LoadingCurveSettings:
    """Oven currents (A, comma-separated), the longest wait for the chain at one current (s),
    how to empty the trap, and the counting of each look (shots × window s)."""

    currents: str = "2.1,2.3,2.5"
    timeout: float = 60.0
    empty: str = "rf"
    empty_s: float = 6.0
    empty_power: float = -15.0
    window: float = 0.005
    shots: int = 10

    def current_list(self) -> list[float]:
        try:
            values = [float(v) for v in self.currents.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"--currents {self.currents!r}: comma-separated amperes, e.g. 2.0,2.2,2.4"
            ) from None
        return values

    def check(self) -> None:
        """ValueError naming the setting and what is allowed."""
        values = self.current_list()
        if not 1 <= len(values) <= 20:
            raise ValueError(f"--currents {self.currents!r}: 1..20 currents")
        if any(not 0.5 <= v <= 5.0 for v in values):
            raise ValueError(f"--currents {self.currents!r}: each within 0.5..5 A")
        if not 1.0 <= self.timeout <= 600.0:
            raise ValueError(f"--timeout {self.timeout:g} s: 1..600 s")
        if self.empty not in EMPTY_STRATEGIES:
            raise ValueError(f"--empty {self.empty!r}: one of {', '.join(EMPTY_STRATEGIES)}")
        if not 0.5 <= self.empty_s <= 60.0:
            raise ValueError(f"--empty_s {self.empty_s:g} s: 0.5..60 s")
        if not -30.0 <= self.empty_power <= -10.0:
            raise ValueError(f"--empty_power {self.empty_power:g} dBm: -30..-10 dBm")
        if not 1e-4 <= self.window <= 0.1:
            raise ValueError(f"--window {self.window:g} s: 0.1..100 ms")
        if not 1 <= self.shots <= 200 or self.shots * self.window > 2.0:
            raise ValueError(f"--shots {self.shots}: 1..200, at most 2 s of counting a look")


@dataclass
class Trap:
    """The lab's loading hardware and the chain's count (from the lab file's recovery)."""

    lab: Lab
    settings: LoadingCurveSettings
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    lease: str | None = None  # the trap's loan: counts then are the borrower's clock jobs

    def __post_init__(self) -> None:
        r = self.lab.config.recovery
        self.chain_ions = max(1, r.chain_ions)
        self.reload_current_a = r.oven_current
        self.oven = self.lab.instrument(r.oven_supply)
        self.channel = f"ch{r.oven_channel}"
        self.oven_voltage_v = r.oven_voltage
        self.shutter = self.lab.instrument(r.pi_shutter)
        self.rf = self.lab.instrument(r.rf_drive)
        self.threshold = float(str(self.lab.instrument("pulser").get("ion_threshold_rate")))

    def rf_power(self, dbm: object) -> None:
        """Set the RF power; the driver ramps it 1 dB at a time, which takes seconds."""
        self.lab.call(self.rf.name, "set", {"name": "power", "value": dbm}, timeout=60.0)

    def ions(self) -> int:
        """Ions fluorescing on their own pixels (from the chain's total on one detector)."""
        s = self.settings
        rates = count_per_ion(self.lab, self.lab.config.device, s.window, s.shots, self.lease)
        if len(rates) == 1 and self.chain_ions > 1:
            return min(self.chain_ions, int(rates[0] / self.threshold))
        return sum(rate > self.threshold for rate in rates)

    def oven_on(self, current_a: float) -> None:
        self.oven.set(f"{self.channel}.voltage", self.oven_voltage_v)
        self.oven.set(f"{self.channel}.current", current_a)
        self.oven.set(f"{self.channel}.output", True)
        self.shutter.set("open", True)

    def oven_off(self) -> None:
        self.shutter.set("open", False)
        self.oven.set(f"{self.channel}.output", False)

    def empty(self) -> None:
        """Throw the chain out; JobFailed if ions remain after three tries."""
        s = self.settings
        self.oven_off()
        for _ in range(3):
            if s.empty == "sim_fault":
                self.lab.call("sim", "call", {"name": "fault", "kind": "ion_loss"}, timeout=10.0)
            else:
                before = float(str(self.rf.get("power")))
                self.rf_power(s.empty_power)
                try:
                    self.sleep(s.empty_s)
                finally:
                    self.rf_power(before)
            if self.ions() == 0:
                return
        raise JobFailed(
            f"ions remain in the trap after emptying it three times ({s.empty}); "
            "a lower --empty_power or a longer --empty_s empties it"
        )

    def time_to_load(self, current_a: float) -> float:
        """Seconds from oven on to the whole chain fluorescing (NaN past `timeout`)."""
        self.empty()
        start = self.clock()
        self.oven_on(current_a)
        try:
            while self.clock() - start < self.settings.timeout:
                if self.ions() >= self.chain_ions:
                    return self.clock() - start
            return math.nan
        finally:
            self.oven_off()

    @contextmanager
    def kept(self) -> Iterator[None]:
        """The oven and the shutter and the RF power put back as they were, whatever happens."""
        ch = self.channel
        before = {
            "voltage": self.oven.get(f"{ch}.voltage"),
            "current": self.oven.get(f"{ch}.current"),
            "output": self.oven.get(f"{ch}.output"),
            "open": self.shutter.get("open"),
            "power": self.rf.get("power"),
        }
        try:
            yield
        finally:
            self.rf_power(before["power"])
            self.shutter.set("open", before["open"])
            self.oven.set(f"{ch}.voltage", before["voltage"])
            self.oven.set(f"{ch}.current", before["current"])
            self.oven.set(f"{ch}.output", before["output"])


def check_oven_limit(lab: Lab, currents: list[float]) -> None:
    """ValueError before anything moves if a current is beyond the lab file's oven limit (the
    driver would refuse it only after the trap had been emptied)."""
    r = lab.config.recovery
    oven = lab.config.instruments.get(r.oven_supply)
    limits = oven.limits if oven is not None else {}
    limit = limits.get(f"ch{r.oven_channel}.current") or limits.get("current")
    if limit is None:
        return
    low = limit.min.value if limit.min is not None else -math.inf
    high = limit.max.value if limit.max is not None else math.inf
    beyond = [c for c in currents if not low <= c <= high]
    if beyond:
        raise ValueError(
            f"--currents {','.join(f'{c:g}' for c in beyond)}: beyond the {r.oven_supply} "
            f"current limit [{low:g}, {high:g}] A of the lab file"
        )


def load_model(reference_a: float) -> Callable[..., Any]:
    def model(current: npt.NDArray[np.float64], t_ref: float, scale: float) -> Any:
        return t_ref * np.exp(-(current - reference_a) / scale)

    return model


def loading_curve(
    lab: Lab, settings: LoadingCurveSettings, progress: Progress | None = None
) -> dict[str, Any]:
    """Borrow the trap, measure each current's load time, give the trap back (the daemon then
    verifies the chain), fit; the result with `load_time` at the lab's reload current."""
    settings.check()
    currents = settings.current_list()
    check_oven_limit(lab, currents)
    trap = Trap(lab, settings)
    qcodes_station(lab, ["pulser", trap.rf.name])
    chosen = {"current": math.nan}
    sweep = Parameter(
        "oven_current",
        label="oven current",
        unit="A",
        get_cmd=lambda: chosen["current"],
        set_cmd=lambda v: chosen.__setitem__("current", float(v)),
    )
    measure = Parameter(
        "load_time",
        label="time to load the chain",
        unit="s",
        get_cmd=lambda: trap.time_to_load(chosen["current"]),
        set_cmd=False,
    )
    status = daemon_status_reader(lab)

    def while_lent() -> dict[str, Any]:
        """The daemon's status without the alarm of the empty trap this experiment made."""
        read = dict(status())
        holder = read.get("lent", {}).get("trap") if isinstance(read.get("lent"), dict) else None
        if isinstance(holder, dict) and holder.get("owner") == OWNER:
            read.pop("alarm", None)
        return read

    lease_s = len(currents) * (settings.timeout + 4 * settings.empty_s + 30.0)
    experiment = load_or_create_experiment("loading-curve", sample_name=lab.config.lab.name)
    with borrowed_laser(lab, "trap", OWNER, lease_s=min(lease_s, 3600.0)) as loan, trap.kept():
        trap.lease = loan.lease  # its counts are the borrower's clock jobs
        result = scan(
            sweep,
            currents,
            [measure],
            Suspender(while_lent),
            name="loading-curve",
            after_point=(lambda i: progress(i + 1, len(currents))) if progress else None,
            metadata={
                "ionpilot_loading": f"whole chain of {trap.chain_ions}, empty={settings.empty}"
            },
            experiment=experiment,
        )
    data = result.dataset.get_parameter_data()["load_time"]
    x_all = np.asarray(data["oven_current"], dtype=float)
    y_all = np.asarray(data["load_time"], dtype=float)
    ok = np.isfinite(y_all) & (y_all > 0)
    x, y = x_all[ok], y_all[ok]
    reference = trap.reload_current_a
    model = load_model(reference)
    if len(x) > 2:
        guess = [float(np.interp(reference, x, y)), 0.3]
        fit = fit_and_check(
            model,
            x,
            y,
            ["t_ref", "scale"],
            guess,
            sigma=y / math.sqrt(trap.chain_ions),
            check=lambda f: "" if f.values["scale"] > 0 else "load time does not fall with current",
        )
    else:
        fit = Fit(False, message=f"{len(x)} loaded points cannot fix 2 parameters")
    derived = {
        "load_time_s": fit.values.get("t_ref", math.nan),
        "load_time_error_s": fit.errors.get("t_ref", math.nan),
        "reload_current_A": reference,
        "current_scale_A": fit.values.get("scale", math.nan),
    }
    out = finish(
        lab,
        "loading-curve",
        result,
        x,
        y,
        fit=fit,
        model=model,
        x_label="oven current (A)",
        y_label=f"time to load {trap.chain_ions} ions (s)",
        derived=derived,
        calibrations=[
            Recorded("load_time", derived["load_time_s"], derived["load_time_error_s"], "s")
        ],
    )
    out["currents_A"] = [float(v) for v in x_all]
    out["load_times_s"] = [None if not math.isfinite(v) else float(v) for v in y_all]
    out["loaded"] = f"the whole chain ({trap.chain_ions} ions), each on its own pixel"
    return out
