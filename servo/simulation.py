"""The clock lock against the simulated lab's physics `World`, in process and on virtual time.

`WorldLab` is the in-process implementation of `LabInterface` (the live one goes over the bus).
It reaches the world only through its public methods and is typed structurally (`WorldLike`),
so `ionpilot.servo` does not import `ionpilot.sim` (the CLI builds the World and hands it in).

Hot path: the n probes of one side are one call. If the World offers a bulk probe
(`probe_clock_batch`, see `WorldLike`), it is used; otherwise the side is evaluated here from the
world's own laser offset (`clock_offset_hz`), π amplitude, Rabi frequency, micromotion and
white-FM level, with numpy Bernoulli draws, and the world is advanced once by the whole side —
one world step per side instead of two per probe (the per-probe `probe_clock` costs ~60 µs,
too slow for a simulated day in 10 s).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from scipy import special

from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.interrogation import ProbeSpec
from ionpilot.servo.outputs import Outputs
from ionpilot.servo.seams import LabError, LabRefused, SignalInvalid
from ionpilot.servo.settings import AuxLockSettings, ClockLockSettings
from ionpilot.servo.stability import (
    ONE_SIGMA,
    allan,
    loglog_slope,
    mean_uncertainty,
    ratio_band,
    white_fm_coefficient,
)

FloatArray = npt.NDArray[np.float64]


class WorldLike(Protocol):
    """The parts of `ionpilot.sim.world.World` the adapter uses."""

    settings: Any
    present: list[bool]
    white_fm_h0: float
    epoch_unix: float
    comb_repetition_rate: float
    lasers: Any

    def now(self) -> float: ...
    def advance(self, seconds: float) -> None: ...
    def clock_offset_hz(self, t: float | None = None, white_over: float = 0.0) -> float: ...
    def clock_line_aom_hz(self) -> float: ...
    def pi_amplitude(self, duration_s: float) -> float: ...
    def micromotion_beta(self) -> float: ...
    def set_dds(self, channel: str, **values: float) -> dict[str, float]: ...
    def cooled_count_rate(self) -> float: ...
    def wavemeter_read(self, channel: int) -> Any: ...
    def comb_query(self, unix_t: float) -> Any: ...
    def set_laser(
        self,
        key: str,
        current_a: float | None = None,
        piezo_v: float | None = None,
        enabled: bool | None = None,
    ) -> None: ...


class WorldClock:
    """The lock's clock seam on the world's time: `now` is world seconds, `wall_ns` adds the
    world's Unix epoch (virtual time has a fixed epoch, so runs are reproducible)."""

    def __init__(self, world: WorldLike) -> None:
        self.world = world

    def now(self) -> float:
        return self.world.now()

    def wall_ns(self) -> int:
        return round((self.world.epoch_unix + self.world.now()) * 1e9)


def _laser_key(name: str) -> str:
    for key in ("369", "935", "399", "435"):
        if key in name:
            return key
    raise LabError(f"no laser '{name}' in the simulated lab")


class WorldLab:
    """`LabInterface` on an in-process World. `detunings` records, per interrogation call, the
    true mean detuning of the probe light from the ion's line (Hz): the simulation's truth."""

    def __init__(self, world: WorldLike, seed: int = 1, record_truth: bool = True) -> None:
        self.world = world
        self.rng = np.random.default_rng([seed, 435])
        self.record_truth = record_truth
        self.detunings: list[float] = []
        ion = world.settings.ion
        self._rabi_hz = float(ion.clock_rabi_frequency)
        self._batch = getattr(world, "probe_clock_batch", None)
        # AOM frequency of the line for zero laser offset (the world's AOM centre + offset)
        self._line_reference_hz = world.clock_line_aom_hz() + world.clock_offset_hz()
        self.calls = 0

    # -- the clock interrogation ------------------------------------------------------------

    def interrogate(self, probe: ProbeSpec, aom_frequency_hz: float, n_probes: int) -> int:
        self.calls += 1
        w = self.world
        if self._batch is not None and probe.kind == "rabi":
            excited, mean_detuning = self._batch(
                aom_frequency_hz, probe.pulse_time_s, n_probes, probe.cycle_time_s
            )
            if self.record_truth:
                self.detunings.append(float(mean_detuning))
            return int(excited)
        duration = probe.probe_duration_s
        cycle = probe.cycle_time_s
        t0 = w.now()
        # the laser's offset at the first and last probe: the world's offset is linear drift
        # plus a noise state held over the side, so interpolating between them is exact
        t_first = t0 + 0.5 * duration
        off_first = w.clock_offset_hz(t_first)
        off_last = w.clock_offset_hz(t_first + (n_probes - 1) * cycle)
        base = off_first + (aom_frequency_hz - self._line_reference_hz)
        slope = (off_last - off_first) / (n_probes - 1) if n_probes > 1 else 0.0
        # n is ~10: scalar math over numpy-drawn randoms beats numpy on tiny arrays 4:1
        uniforms = self.rng.random(n_probes).tolist()
        white = math.sqrt(w.white_fm_h0 / (2 * duration)) if w.white_fm_h0 > 0 else 0.0
        normals = self.rng.standard_normal(n_probes).tolist() if white else None
        present = w.present[0]
        excited = 0
        total = 0.0
        sin = math.sin
        if probe.kind == "rabi":
            beta = w.micromotion_beta()
            factor = float(special.j0(beta)) if beta else 1.0
            rabi = self._rabi_hz * w.pi_amplitude(duration) * factor
            rabi2 = rabi * rabi
            k = math.pi * duration
            sqrt = math.sqrt
            for i in range(n_probes):
                d = base + slope * i
                if normals is not None:
                    d += white * normals[i]
                total += d
                g2 = d * d + rabi2
                s = sin(k * sqrt(g2))
                if uniforms[i] * g2 < rabi2 * s * s:
                    excited += 1
        else:
            k = 2 * math.pi * probe.effective_time_s
            cos = math.cos
            for i in range(n_probes):
                d = base + slope * i
                if normals is not None:
                    d += white * normals[i]
                total += d
                if uniforms[i] < 0.5 * (1 + cos(k * d)):
                    excited += 1
        if not present:
            excited = 0
        w.advance(n_probes * cycle)
        if self.record_truth:
            self.detunings.append(total / n_probes)
        return excited

    def set_clock_aom_frequency(self, frequency_hz: float) -> None:
        self.world.set_dds("clock_aom", frequency_hz=frequency_hz)

    # -- signals and parameters -------------------------------------------------------------

    def read(self, signal: str) -> float:
        w = self.world
        instrument, _, parameter = signal.partition(".")
        if parameter.endswith("frequency") and parameter.startswith("ch"):
            reading = w.wavemeter_read(int(parameter[2:].split(".")[0]))
            if not reading.valid:
                raise SignalInvalid(f"{signal}: wavemeter exposure invalid")
            return float(reading.frequency_hz)
        if parameter == "piezo_voltage":
            return float(w.lasers[_laser_key(instrument)].piezo_v)
        if parameter == "current":
            return float(w.lasers[_laser_key(instrument)].current_a)
        if parameter in ("repetition_rate", "offset_frequency", "frequency"):
            record = w.comb_query(w.epoch_unix + w.now())
            if record is None or not record.locked:
                raise SignalInvalid(f"{signal}: comb not locked")
            if parameter == "repetition_rate":
                return float(record.repetition_rate_hz)
            if parameter == "offset_frequency":
                return float(record.offset_frequency_hz)
            return float(record.beat_hz)
        raise LabError(f"unknown signal '{signal}'")

    def set(self, parameter: str, value: float) -> None:
        instrument, _, name = parameter.partition(".")
        if name == "piezo_voltage":
            self.world.set_laser(_laser_key(instrument), piezo_v=value)
            return
        if name == "current":  # the DLC pro's current set point (the world models mode hops)
            self.world.set_laser(_laser_key(instrument), current_a=value)
            return
        raise LabError(f"unknown parameter '{parameter}'")

    def is_ion_present(self) -> bool:
        ion = self.world.settings.ion
        threshold = ion.background_count_rate + 0.5 * ion.bright_count_rate
        return self.world.cooled_count_rate() > threshold


# ---------------------------------------------------------------------------------------------
# The accelerated run


@dataclass
class ClockSimRecord:
    """The frequency record of a run: one point per locked servo update."""

    t_s: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)  # fractional offset of the light from the ion
    drift_hz_per_s: list[float] = field(default_factory=list)  # the drift integrator


def run_clock_lock(
    world: WorldLike,
    settings: ClockLockSettings,
    hours: float,
    seed: int = 1,
    *,
    outputs: Outputs | None = None,
    aux_locks: dict[str, AuxLockSettings] | None = None,
) -> tuple[ClockLock, WorldLab, ClockSimRecord, list[AuxLock]]:
    """Start the clock lock (and the wavemeter locks that keep the ion cooled) on the world and
    step them for `hours` of world time; aux locks step between clock updates when due."""
    lab = WorldLab(world, seed)
    clock = WorldClock(world)
    lock = ClockLock(settings, lab, clock, outputs)
    auxes = [AuxLock(name, s, lab, clock, outputs) for name, s in (aux_locks or {}).items()]
    for aux in auxes:
        aux.start()
    lock.start()
    record = ClockSimRecord()
    nu0 = settings.clock_frequency
    end = clock.now() + hours * 3600.0
    detunings = lab.detunings
    t_append = record.t_s.append
    y_append = record.y.append
    d_append = record.drift_hz_per_s.append
    step = lock.step
    now = clock.now
    while True:
        t = now()
        if t >= end:
            break
        for aux in auxes:
            if t >= aux.next_due:
                aux.step()
        update = step()
        if update is not None:
            t_append(update.t_s)
            y_append((detunings[-1] + detunings[-2]) / (2 * nu0))
            d_append(update.drift_hz_per_s)
        elif lock.state is LockState.UNLOCKED:
            world.advance(min(60.0, end - t))
        if len(detunings) > 4096:
            del detunings[:-2]
    return lock, lab, record, auxes


def settle_time_s(settings: ClockLockSettings, update_s: float) -> float:
    """Data before this much locked time is dropped: ten time constants of the slowest loop."""
    slowest = settings.drift_gain if settings.servo_order == "second" else settings.gain
    slowest = slowest or settings.gain
    return 10 * update_s / slowest


def clock_sim(
    world: WorldLike,
    settings: ClockLockSettings,
    hours: float,
    seed: int = 1,
    *,
    ci_level: float = ONE_SIGMA,
    band_level: float = 0.999,
    servo_excess: float = 0.15,
    aux_locks: dict[str, AuxLockSettings] | None = None,
) -> dict[str, Any]:
    """Run the lock for `hours` and summarise it: ADEV against the QPN limit, mean offset,
    drift. Keys as `ionpilot clock-sim --json` prints them."""
    drift_true = float(world.settings.clock_laser.cavity_drift)
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    lock, _, record, auxes = run_clock_lock(world, settings, hours, seed, aux_locks=aux_locks)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    update_s = lock.update_interval_s
    tc = lock.time_constant_s
    t = np.asarray(record.t_s)
    y = np.asarray(record.y)
    result: dict[str, Any] = {
        "sim_hours": hours,
        "wall_s": wall,
        "speedup": hours * 3600.0 / wall if wall > 0 else math.inf,
        "cpu_s": cpu,  # wall_s includes time lost to other processes on a shared machine
        "seed": seed,
        "servo_order": settings.servo_order,
        "interrogation": settings.interrogation,
        "final_state": lock.state.value,
        "updates": lock.updates,
        "acquisition_steps": lock.acquisition_steps,
        "update_interval_s": update_s,
        "servo_time_constant_s": tc,
        "drift_true_hz_per_s": drift_true,
        "drift_estimated_hz_per_s": lock.drift_hz_per_s,
        "drift_estimate_final_hz_per_s": lock.drift_hz_per_s,
        "aux_locks": {aux.name: aux.state for aux in auxes},
        "ions_present": int(sum(world.present)),
    }
    if len(t) == 0:
        result["error"] = "the lock never locked"
        return result
    settle = settle_time_s(settings, update_s)
    keep = t >= t[0] + settle
    y = y[keep]
    rate = 1.0 / update_s
    coefficient = lock.probe.qpn_coefficient(settings.clock_frequency)
    if len(y) < 20:
        result["error"] = f"only {len(y)} locked points after settling"
        return result
    adev = allan(y, rate, ci_level)
    qpn = [coefficient / math.sqrt(tau) for tau in adev.tau_s]
    ratios = [s / q for s, q in zip(adev.sigma, qpn, strict=True)]
    long_taus = [i for i, tau in enumerate(adev.tau_s) if tau >= 20 * tc]
    checks = []
    for i in long_taus:
        lo, hi = ratio_band(adev.edf[i], band_level, servo_excess)
        checks.append(
            {
                "tau_s": adev.tau_s[i],
                "ratio": ratios[i],
                "band": [lo, hi],
                "ok": lo <= ratios[i] <= hi,
            }
        )
    slope = loglog_slope(
        [adev.tau_s[i] for i in long_taus],
        [adev.sigma[i] for i in long_taus],
        [adev.edf[i] for i in long_taus],
    )
    drift = np.asarray(record.drift_hz_per_s)[keep]
    mean = float(np.mean(y))
    white = white_fm_coefficient(
        [adev.tau_s[i] for i in long_taus],
        [adev.sigma[i] for i in long_taus],
        [adev.edf[i] for i in long_taus],
    )
    uncertainty = mean_uncertainty(white, len(y) / rate)
    result.update(
        {
            "settle_s": settle,
            # the drift integrator is noisy update to update: report its mean once settled
            "drift_estimated_hz_per_s": float(np.mean(drift)),
            "drift_estimate_std_hz_per_s": float(np.std(drift)),
            "locked_points": len(y),
            "adev": {
                "tau_s": adev.tau_s,
                "sigma": adev.sigma,
                "ci_low": adev.ci_low,
                "ci_high": adev.ci_high,
                "ci_level": adev.ci_level,
                "edf": adev.edf,
            },
            "qpn_sigma": qpn,
            "qpn_coefficient": coefficient,
            "white_fm_coefficient": white,
            "adev_qpn_ratio": ratios[-1],
            "adev_qpn_ratio_tau_s": adev.tau_s[-1],
            "qpn_checks": checks,
            "qpn_band_level": band_level,
            "slope": slope,
            "mean_fractional_offset": mean,
            "offset_uncertainty": uncertainty,
            "offset_sigmas": mean / uncertainty if uncertainty > 0 else math.inf,
            "first_order_offset_expected": drift_true
            * update_s
            / settings.gain
            / settings.clock_frequency,
        }
    )
    result["_record"] = (t[keep], y)
    return result


# ---------------------------------------------------------------------------------------------
# Faults the World does not have, and the lab actions the recovery playbooks use


class FaultyWorldLab(WorldLab):
    """`WorldLab` with what the recovery playbooks need, and two faults the World lacks:

    * the driver host crashing (a process fault, not physics): from a crash until the supervisor
      has restarted it every lab call raises `LabError` and its heartbeat stops;
    * a fraction of single wavemeter exposures invalid (the World only has invalid periods).

    Lab actions map onto the World's public setters under the drivers' parameter names; a mode
    hop is undone as in the lab, by the playbook's current sweep (the World models the hop's
    hysteresis). `limits` are the driver host's safety limits (parameter → (min, max) in SI):
    a set outside them is refused (`LabRefused`, nothing applied), as the host refuses it.
    Micromotion (`trap.micromotion_index`) is the World's β, measured in `micromotion_probe_s`
    (a sideband probe)."""

    def __init__(
        self,
        world: WorldLike,
        seed: int = 1,
        *,
        wavemeter_invalid_fraction: float = 0.0,
        supervisor_restart_s: float = 6.0,
        driver_start_s: float = 4.0,
        micromotion_probe_s: float = 5.0,
        record_truth: bool = True,
        limits: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        super().__init__(world, seed, record_truth)
        self.w: Any = world
        self.fault_rng = np.random.default_rng([seed, 871])
        self.wavemeter_invalid_fraction = wavemeter_invalid_fraction
        self.supervisor_restart_s = supervisor_restart_s
        self.driver_start_s = driver_start_s
        self.limits_si = dict(limits or {})
        self.refused: list[tuple[str, float]] = []  # sets refused as out of limits
        self.micromotion_probe_s = micromotion_probe_s
        self.crash_times: list[float] = []
        self.host_back_at: float | None = None  # host down until then
        self.crashes = 0
        self.restart_requests = 0
        self.count_duration_s = 0.05

    # -- the driver host ----------------------------------------------------------------------

    def schedule_crashes(self, times: list[float]) -> None:
        self.crash_times = sorted(self.crash_times + list(times))

    def crash_driver_host(self) -> None:
        """The host process dies now; the supervisor notices the exit and restarts it."""
        self.crashes += 1
        self.host_back_at = self.world.now() + self.supervisor_restart_s

    def host_up(self) -> bool:
        t = self.world.now()
        if self.host_back_at is None and (not self.crash_times or t < self.crash_times[0]):
            return True  # the hot path: no crash due
        while self.crash_times and self.crash_times[0] <= t:
            at = self.crash_times.pop(0)
            self.crashes += 1
            self.host_back_at = at + self.supervisor_restart_s
        if self.host_back_at is not None:
            if t >= self.host_back_at:
                self.host_back_at = None
                return True
            return False
        return True

    def restart_process(self, name: str) -> None:
        """The supervisor's restart, asked for by the recovery: up after `driver_start_s`."""
        self.restart_requests += 1
        if self.host_back_at is not None:
            self.host_back_at = min(self.host_back_at, self.world.now() + self.driver_start_s)

    def _host(self) -> None:
        if not self.host_up():
            raise LabError("driver host not answering")

    # -- the seam -------------------------------------------------------------------------------

    def interrogate(self, probe: ProbeSpec, aom_frequency_hz: float, n_probes: int) -> int:
        self._host()
        return super().interrogate(probe, aom_frequency_hz, n_probes)

    def set_clock_aom_frequency(self, frequency_hz: float) -> None:
        self._host()
        super().set_clock_aom_frequency(frequency_hz)

    def is_ion_present(self) -> bool:
        self._host()
        return super().is_ion_present()

    def read(self, signal: str) -> float:
        self._host()
        w = self.w
        instrument, _, parameter = signal.partition(".")
        if parameter.startswith("ch") and parameter.endswith("frequency"):
            if (
                self.wavemeter_invalid_fraction > 0
                and self.fault_rng.random() < self.wavemeter_invalid_fraction
            ):
                raise SignalInvalid(f"{signal}: wavemeter exposure invalid")
            return super().read(signal)
        if signal == "pulser.count_rate":
            return float(w.cooled_count_rate())
        if signal == "pulser.counts":  # a gate of count_duration on the photon counter
            return float(w.count_photons(self.count_duration_s))
        if parameter == "lock_state":
            return float(w.cavity_state) if "435" in instrument else 0.0
        if instrument.startswith("rf") and parameter == "output":
            return 1.0 if w.rf_output else 0.0
        if instrument.startswith("rf") and parameter == "power":
            return float(w.rf_power_dbm)
        if signal == "trap.micromotion_index":
            w.advance(self.micromotion_probe_s)
            return float(w.micromotion_beta())
        if instrument.startswith("dc") and parameter.endswith(".voltage"):
            return float(w.dc_output(int(parameter[2:4])))
        return super().read(signal)

    def limits(self, parameter: str) -> tuple[float, float] | None:
        """The host's limits of `parameter` (None: none configured)."""
        self._host()
        return self.limits_si.get(parameter)

    def set(self, parameter: str, value: float) -> None:
        self._host()
        bounds = self.limits_si.get(parameter)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            self.refused.append((parameter, value))
            raise LabRefused(
                f"out_of_limits: {parameter} = {value:g} outside the allowed "
                f"{bounds[0]:g}..{bounds[1]:g}; nothing applied"
            )
        w = self.w
        instrument, _, name = parameter.partition(".")
        if instrument == "oven":
            if name.endswith(".current"):
                w.set_supply(1, current_a=value)
            elif name.endswith(".voltage"):
                w.set_supply(1, voltage_v=value)
            elif name.endswith(".output"):
                w.set_supply(1, enabled=bool(value))
                if value:
                    w.set_supply_master(True)
            else:
                raise LabError(f"unknown parameter '{parameter}'")
            return
        if instrument.startswith("shutter_") and name == "open":
            w.set_shutter(instrument.removeprefix("shutter_"), bool(value))
            return
        if instrument.startswith("rf"):
            if name == "output":
                w.set_rf(output=bool(value))
            elif name == "power":
                w.set_rf(power_dbm=value)
            else:
                raise LabError(f"unknown parameter '{parameter}'")
            return
        if instrument.startswith("dc") and name.endswith(".voltage"):
            w.set_dc(int(name[2:4]), level_v=value)
            return
        if parameter == "pulser.count_duration":
            self.count_duration_s = float(value)
            return
        if name == "lock_enabled":
            w.set_cavity_lock(bool(value))
            return
        super().set(parameter, value)
