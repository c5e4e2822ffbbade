"""The lab seam on the simulated World in process, on virtual time: the accelerated twin of the
daemon's `BusLab`, with no sockets in between.

Clock interrogations are the sequencer's programs (`servo/clock_shots.py`, the same object the
live `BusLab` uses) played by the simulated pulse controller's own request handling
(`sim/instruments/ionpilot_pulser.py`) on the World: the same pulses, the same cooling-window and
detection counts as live, so an ion loss is seen the same way. Readings and set-points map the
drivers' parameter names onto the World's public setters and getters.

Two faults the World does not have are the adapter's: the driver host crashing (a process fault:
from a crash until the supervisor has restarted it every lab call raises `LabError` and its
heartbeat stops) and a fraction of single wavemeter exposures invalid. `limits` are the driver
host's safety limits (parameter → (min, max) in SI): a set outside them is refused (`LabRefused`,
nothing applied), as the host refuses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ionpilot.core.clock import ManualClock
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.clock_shots import ClockShots
from ionpilot.servo.interrogation import ProbeSpec
from ionpilot.servo.seams import LabError, LabRefused, SignalInvalid
from ionpilot.servo.settings import PulseCalibration
from ionpilot.sim.instruments.ionpilot_pulser import Pulser, RequestError
from ionpilot.sim.world import AOM_CENTRE_HZ, Pulse, World

PROGRAMS_KEPT = 8  # distinct schedules whose parse the in-process controller remembers
_SCALARS = frozenset({int, float, str, bool, type(None)})  # fields nobody can change inside


@dataclass
class _Parsed:
    """A schedule the in-process controller has parsed and checked: each pulse's fields but its
    DDS frequency, their types, the frequencies as last sent, and what the parse gave."""

    fields: list[dict[str, Any]]
    kinds: list[list[type]]
    sent: list[object]
    pulses: list[Pulse]
    windows: list[str]
    shot_s: float


def _shape(raw: list[Any]) -> tuple[list[dict[str, Any]], list[list[type]], list[object]] | None:
    """(fields but the frequency, their types, the frequency) per pulse; None if a pulse is not
    an object of scalars (a condition, MS targets: the caller could change them inside)."""
    fields: list[dict[str, Any]] = []
    kinds: list[list[type]] = []
    sent: list[object] = []
    for pulse in raw:
        if type(pulse) is not dict:
            return None
        rest = dict(pulse)
        sent.append(rest.pop("frequency_hz", None))
        types = [type(v) for v in rest.values()]
        if not _SCALARS.issuperset(types):
            return None
        fields.append(rest)
        kinds.append(types)
    return fields, kinds, sent


def _retuned(pulse: Pulse, frequency_hz: float | None) -> Pulse:
    """`pulse` at another DDS frequency. Its other fields are already checked, so they are
    copied as they are (`dataclasses.replace` would build it field by field: 5x slower, and
    this is once per clock run)."""
    if not hasattr(pulse, "__dict__"):  # a slotted Pulse: field by field
        return replace(pulse, frequency_hz=frequency_hz)
    retuned = object.__new__(Pulse)
    retuned.__dict__.update(pulse.__dict__, frequency_hz=frequency_hz)
    return retuned


class InProcessPulser(Pulser):
    """The simulated pulse controller's own request handling, called in process. The one
    difference from the socket: a schedule it has already parsed and checked (the same pulses,
    fields of the same types) is not parsed again, and in one that differs from it only in
    pulses' DDS frequencies just those frequencies are checked. A clock program repeats all but
    its clock pulse's frequency from run to run, and parsing was a quarter of a simulated day's
    cost."""

    def __init__(self, world: World, name: str) -> None:
        super().__init__(world, name)
        self._known: list[_Parsed] = []  # newest first

    def _program(self, raw: list[Any]) -> tuple[list[Pulse], list[str], float]:
        shape = _shape(raw)
        if shape is None:
            return super()._program(raw)
        fields, kinds, sent = shape
        for known in self._known:
            if known.fields == fields and known.kinds == kinds:
                break
        else:
            pulses, windows, shot_s = super()._program(raw)
            self._known.insert(0, _Parsed(fields, kinds, sent, pulses, windows, shot_s))
            del self._known[PROGRAMS_KEPT:]
            return pulses, windows, shot_s
        for i, frequency in enumerate(sent):
            was = known.sent[i]
            if frequency is was or (frequency == was and type(frequency) is type(was)):
                continue
            retuned = _retuned(known.pulses[i], self._frequency(raw[i], i))
            known.pulses = [*known.pulses[:i], retuned, *known.pulses[i + 1 :]]
            known.sent = [*known.sent[:i], frequency, *known.sent[i + 1 :]]
        return known.pulses, known.windows, known.shot_s


def world_clock(world: World) -> ManualClock:
    """The World's virtual clock, which is the servo's clock seam on virtual time (one virtual
    clock: `ionpilot.sim.clock.VirtualClock` is `ManualClock`)."""
    if not isinstance(world.clock, ManualClock):
        raise ValueError("the harness runs on virtual time: give the World a ManualClock")
    return world.clock


def world_device(device: DeviceSettings | None = None) -> DeviceSettings:
    """`device` (default: the sequencer's defaults) with its clock beam centred on the simulated
    clock AOM, as configs/sim-lab.yaml has it: what the harness uses when no lab file does."""
    base = device or DeviceSettings()
    channels = dict(base.channels)
    channels[base.clock_channel] = dataclasses.replace(
        channels[base.clock_channel], aom_center_frequency=AOM_CENTRE_HZ, aom_bandwidth=100e6
    )
    return dataclasses.replace(base, channels=channels)


def _laser_key(name: str) -> str:
    for key in ("369", "935", "399", "435"):
        if key in name:
            return key
    raise LabError(f"no laser '{name}' in the simulated lab")


class WorldLab:
    """`LabInterface` (and `KnowsLimits`) on an in-process World. `detunings` records, per
    interrogation, the true mean detuning of the probe light from the ion's line (Hz): the
    simulation's truth, for the frequency record of `clock-sim`."""

    def __init__(
        self,
        world: World,
        pulses: PulseCalibration | None = None,
        device: DeviceSettings | None = None,
        seed: int = 1,
        *,
        pulser: str = "pulser",
        record_truth: bool = True,
        wavemeter_invalid_fraction: float = 0.0,
        supervisor_restart_s: float = 6.0,
        driver_start_s: float = 4.0,
        micromotion_probe_s: float = 5.0,
        limits: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        self.world = world
        self.pulses = pulses or PulseCalibration()
        self.pulser_name = pulser
        self.pulser = InProcessPulser(world, pulser)
        self.shots = ClockShots(self._pulser_run, self.pulses, device or world_device(), pulser)
        self.record_truth = record_truth
        self.detunings: list[float] = []
        self._run_truth: list[float] = []
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
        self.calls = 0

    # -- the pulse controller ---------------------------------------------------------------

    def _pulser_run(self, shots: int, pulses: list[dict[str, Any]], timeout_s: float) -> Any:
        """The simulated controller's `run` request, in process (what the driver sends)."""
        self._host()
        try:
            # the request as the controller's line protocol carries it, minus the JSON framing
            reply = self.pulser._dispatch({"op": "run", "shots": shots, "schedule": pulses})
        except RequestError as exc:
            raise LabRefused(f"{self.pulser_name} run: {exc.code}: {exc.message}") from exc
        if self.record_truth:
            self._run_truth.extend(self.world.last_clock_detunings_hz)
        return reply

    def interrogate(self, probe: ProbeSpec, aom_frequency_hz: float, n_probes: int) -> int:
        self.calls += 1
        self._run_truth = []
        try:
            return self.shots.interrogate(probe, aom_frequency_hz, n_probes)
        finally:
            if self.record_truth and self._run_truth:
                self.detunings.append(sum(self._run_truth) / len(self._run_truth))

    def set_clock_aom_frequency(self, frequency_hz: float) -> None:
        self._host()
        self.world.set_dds("clock_aom", frequency_hz=frequency_hz)

    def is_ion_present(self) -> bool:
        """A `presence_count_time` photon count above the threshold rate, as live."""
        self._host()
        duration = self.pulses.presence_count_time
        return self.world.count_photons(duration) / duration > self.pulses.presence_threshold_rate

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

    # -- readings -----------------------------------------------------------------------------

    def read(self, signal: str) -> float:
        self._host()
        w = self.world
        instrument, _, parameter = signal.partition(".")
        if parameter.startswith("ch") and parameter.endswith("frequency"):
            if (
                self.wavemeter_invalid_fraction > 0
                and self.fault_rng.random() < self.wavemeter_invalid_fraction
            ):
                raise SignalInvalid(f"{signal}: wavemeter exposure invalid")
            reading = w.wavemeter_read(int(parameter[2:].split(".")[0]))
            if not reading.valid:
                raise SignalInvalid(f"{signal}: wavemeter exposure invalid")
            return float(reading.frequency_hz)
        if signal == f"{self.pulser_name}.count_rate":
            return float(w.cooled_count_rate())
        if signal == f"{self.pulser_name}.ions_fluorescing":  # each ion's pixel, counted
            per_ion = w.count_photons_per_ion(self.count_duration_s)[1]
            rate = self.pulses.presence_threshold_rate * self.count_duration_s
            return float(sum(c > rate for c in per_ion))
        if signal == f"{self.pulser_name}.counts":  # a gate of count_duration on the counter
            return float(w.count_photons(self.count_duration_s))
        if parameter == "lock_state":
            return float(w.cavity_state) if "435" in instrument else 0.0
        if instrument.startswith("rf") and parameter == "output":
            return 1.0 if w.rf_output else 0.0
        if instrument.startswith("rf") and parameter == "power":
            return float(w.rf_power_dbm)
        if signal == "trap.micromotion_index":  # a sideband probe of `micromotion_probe_s`
            w.advance(self.micromotion_probe_s)
            return float(w.micromotion_beta())
        if instrument.startswith("dc") and parameter.endswith(".voltage"):
            return float(w.dc_output(int(parameter[2:4])))
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

    # -- set-points ---------------------------------------------------------------------------

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
        w = self.world
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
        if parameter == f"{self.pulser_name}.count_duration":
            self.count_duration_s = float(value)
            return
        if name == "lock_enabled":
            w.set_cavity_lock(bool(value))
            return
        if name == "piezo_voltage":
            w.set_laser(_laser_key(instrument), piezo_v=value)
            return
        if name == "current":  # the DLC pro's current set point (the world models mode hops)
            w.set_laser(_laser_key(instrument), current_a=value)
            return
        raise LabError(f"unknown parameter '{parameter}'")
