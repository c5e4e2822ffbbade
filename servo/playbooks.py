"""Declarative recovery playbooks (Bluesky suspenders with plans): a trip condition, a resume
condition, ordered steps each with a timeout, bounded retries and escalation.

A step is a small function of the `RecoveryContext` that does a little and says DONE, WAIT (call
me again in so many seconds) or FAIL; the engine (`recovery.py`) enforces its timeout. Lab calls
block for the lab time they take, so the same playbooks run live and on virtual time. Parameter
names are the drivers' (`oven.ch1.current`, `shutter_399.open`, `laser_435.lock_state`).

Fault signatures and recovery times: REFERENCE.md §3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ionpilot.core.clock import Clock
from ionpilot.core.units import Quantity
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock
from ionpilot.servo.health import HealthMonitor, Severity
from ionpilot.servo.seams import (
    LabError,
    LabInterface,
    LabRefused,
    SignalInvalid,
    diode_current,
    parameter_limits,
    wavemeter_frequency,
)
from ionpilot.servo.settings import (
    AuxLockSettings,
    HealthRule,
    PlaybookSettings,
    RecoverySettings,
)

# health signals the playbooks trip and resume on
FLUORESCENCE = "servo.ion.fluorescence"
HEARTBEAT = "servo.drivers.heartbeat"
MICROMOTION = "servo.trap.micromotion"
COUNT_RATE = "pulser.count_rate"  # lab signal: cooled fluorescence (1/s)
IONS_FLUORESCING = "pulser.ions_fluorescing"  # lab signal: ions whose own pixel sees cooling light
MICROMOTION_SIGNAL = "trap.micromotion_index"  # lab signal: modulation index β (sideband probe)


def heartbeat_signal(settings: RecoverySettings, host: str) -> str:
    """The health signal of a driver host's heartbeat: `servo.drivers.heartbeat` for the host
    the daemon calls (`driver_process`), `servo.<host>.heartbeat` for every other one."""
    return HEARTBEAT if host == settings.driver_process else f"servo.{host}.heartbeat"


def aux_error_signal(loop: str) -> str:
    return f"servo.{loop}.error"


def cavity_signal(cavity_laser: str) -> str:
    return f"{cavity_laser}.lock_state"


def rf_signal(settings: RecoverySettings) -> str:
    return f"{settings.rf_drive}.output"


class StepStatus(Enum):
    DONE = "done"
    WAIT = "wait"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class StepResult:
    status: StepStatus
    wait_s: float = 0.0
    note: str = ""
    retry: bool = True  # FAIL only: False when another attempt cannot help (escalate now)


def done(note: str = "") -> StepResult:
    return StepResult(StepStatus.DONE, 0.0, note)


def wait(seconds: float, note: str = "") -> StepResult:
    return StepResult(StepStatus.WAIT, seconds, note)


def fail(note: str) -> StepResult:
    return StepResult(StepStatus.FAIL, 0.0, note)


def give_up(note: str) -> StepResult:
    """A failure that retrying cannot mend (a safety limit, a search that was exhausted)."""
    return StepResult(StepStatus.FAIL, 0.0, note, retry=False)


@dataclass
class RecoveryContext:
    """What a step may use: the lab, the health, the locks, and its own scratch space."""

    lab: LabInterface
    clock: Clock
    health: HealthMonitor
    settings: RecoverySettings
    lock: ClockLock
    auxes: dict[str, AuxLock]
    restart_process: Callable[[str], None] | None = None
    target: str = ""  # the aux loop of a mode-hop playbook
    scratch: dict[str, Any] = field(default_factory=dict)
    first: bool = True  # first call of the present step
    outcome: str | None = None  # classify the fault differently (ion_loss → ion_dark)
    finish_early: bool = False  # skip the remaining steps
    force_reacquire: bool = False  # the line must be searched for on resume
    reference_optical_hz: float | None = None  # clock laser before the fault (cavity mode)
    loading_started: bool = False  # a reload has begun in this recovery (not a dark state)
    # set points a step moved and must be put back (kept across runs: a pre-empted sweep whose
    # tidy-up failed still knows where the laser was)
    restore: dict[str, float] = field(default_factory=dict)

    def reset(self, target: str) -> None:
        """A new playbook run."""
        self.target = target
        self.scratch = {}
        self.first = True
        self.outcome = None
        self.finish_early = False
        self.loading_started = False

    def set(self, parameter: str, value: float) -> None:
        self.lab.set(parameter, value)

    def ion_present(self) -> bool:
        """The trap holds what it should: an ion, or with `chain_ions` > 1 every ion of the
        chain, each counted on its own pixel (one ion missing from five is a loss)."""
        if self.settings.chain_ions <= 1:
            return self.lab.is_ion_present()
        return self.ions_fluorescing() >= self.settings.chain_ions

    def ions_fluorescing(self) -> int:
        return round(self.lab.read(IONS_FLUORESCING))


StepAction = Callable[[RecoveryContext], StepResult]
Predicate = Callable[[RecoveryContext], bool]


@dataclass(frozen=True)
class Step:
    """One step: `action` is called until it is DONE or FAIL, or `timeout_s` passes."""

    name: str
    action: StepAction
    timeout_s: float = 60.0
    when: Predicate | None = None  # skipped unless this holds


@dataclass(frozen=True)
class Condition:
    """A signal's reported severity is one of `severities` and has been for `for_s`."""

    signal: str
    severities: frozenset[Severity]
    for_s: float = 0.0

    def holds(self, health: HealthMonitor, now: float) -> bool:
        return (
            health.severity(self.signal) in self.severities
            and now - health.since(self.signal) >= self.for_s
        )

    def describe(self, health: HealthMonitor) -> str:
        s = health.signals.get(self.signal)
        state = f"{s.severity.name} ({s.reason})" if s is not None else "unwatched"
        return f"{self.signal} {state}"


BAD = frozenset({Severity.MAJOR})
FAULTY = frozenset({Severity.MAJOR, Severity.INVALID})
STALE = frozenset({Severity.INVALID})
GOOD = frozenset({Severity.OK, Severity.MINOR})


@dataclass(frozen=True)
class Playbook:
    """A fault's recovery. Trips when any trip condition holds; recovered when every resume
    condition holds after the last step (waited for up to `resume_timeout_s`)."""

    name: str
    kind: str  # FaultKind
    priority: int  # lower runs first and pre-empts higher
    trip: tuple[Condition, ...]
    resume: tuple[Condition, ...]
    steps: tuple[Step, ...]
    settings: PlaybookSettings = field(default_factory=PlaybookSettings)
    resume_timeout_s: float = 30.0
    target: str = ""
    period_s: float = 0.0  # also run on this schedule (0 = only on a trip)
    abort: StepAction | None = None  # tidy-up after a failed attempt or a pre-emption

    def tripped_by(self, health: HealthMonitor, now: float) -> Condition | None:
        for c in self.trip:
            if c.holds(health, now):
                return c
        return None

    def resumed(self, health: HealthMonitor, now: float) -> bool:
        return all(c.holds(health, now) for c in self.resume)


# --------------------------------------------------------------------------------------------
# Health rules the playbooks rely on (config rules with the same names override these)


def _q(value: float, unit: str) -> Quantity:
    return Quantity(value, unit)


def default_rules(
    settings: RecoverySettings,
    aux: dict[str, AuxLockSettings],
    cavity_laser: str,
    driver_hosts: Mapping[str, tuple[str, ...]] | None = None,
) -> dict[str, HealthRule]:
    """Rules for the signals the playbooks watch (a heartbeat per driver host)."""
    threshold = settings.fluorescence_threshold
    rules = {
        FLUORESCENCE: HealthRule(
            lolo=_q(threshold, "1/s"),
            hysteresis=_q(0.1 * threshold, "1/s"),  # resumes above 1.1 × the trip level
            stale_after=5.0,
            # the clock shots' cooling windows feed it every ~0.1 s (servo/ion_watch.py): dark
            # for 0.2 s is 3-4 background-level shots in a row (each ~1e-11 likely with an ion)
            debounce=0.2,
            unit="counts/s",
        ),
        HEARTBEAT: HealthRule(stale_after=settings.heartbeat_stale_after),
        cavity_signal(cavity_laser): HealthRule(lolo=_q(1.5, "1"), stale_after=5.0),
        rf_signal(settings): HealthRule(lolo=_q(0.5, "1"), stale_after=5.0),
        **{
            heartbeat_signal(settings, host): HealthRule(stale_after=settings.heartbeat_stale_after)
            for host in driver_hosts or {}
        },
        MICROMOTION: HealthRule(
            high=_q(0.3, "1"),
            hihi=_q(0.6, "1"),
            hysteresis=_q(0.05, "1"),
            stale_after=3 * settings.micromotion_period + 60.0,
        ),
    }
    for loop, s in aux.items():
        major = s.capture_range / 4  # a mode hop (GHz); the PI lock holds tens of MHz
        minor = 5 * s.tolerance
        rules[aux_error_signal(loop)] = HealthRule(
            lolo=_q(-major, "Hz"),
            low=_q(-minor, "Hz"),
            high=_q(minor, "Hz"),
            hihi=_q(major, "Hz"),
            hysteresis=_q(0.2 * minor, "Hz"),
            stale_after=10.0,
            debounce=1.0,  # one bad exposure (1 % are invalid) is not a mode hop
        )
    return rules


# --------------------------------------------------------------------------------------------
# Steps


def _oven(ctx: RecoveryContext, on: bool) -> None:
    s = ctx.settings
    base = f"{s.oven_supply}.ch{s.oven_channel}"
    if on:
        ctx.set(f"{base}.voltage", s.oven_voltage)
        ctx.set(f"{base}.current", s.oven_current)
    ctx.set(f"{base}.output", on)


def repump_check(ctx: RecoveryContext) -> StepResult:
    """Rule out a dark state first (dark ≠ lost): cycle the repump light, look again."""
    s = ctx.settings
    if ctx.first:
        ctx.set(f"{s.repump_shutter}.open", False)
        ctx.set(f"{s.repump_shutter}.open", True)
        return wait(0.5, "repump cycled")
    if ctx.ion_present() and not ctx.loading_started:
        ctx.outcome = "ion_dark"
        ctx.finish_early = True
        return done("fluorescence back after the repump: the ion was in a dark state")
    return done("still dark after the repump: the ion is lost")


def reload_ion(ctx: RecoveryContext) -> StepResult:
    """Oven and photoionisation until single-ion fluorescence returns."""
    s = ctx.settings
    if ctx.first:
        if ctx.ion_present():
            return done("an ion is already there")
        ctx.loading_started = True
        _oven(ctx, True)
        ctx.set(f"{s.pi_shutter}.open", True)
        return wait(2.0, f"oven at {s.oven_current:g} A, photoionisation beam open")
    if ctx.ion_present():
        ctx.set(f"{s.pi_shutter}.open", False)
        _oven(ctx, False)
        return done("fluorescence returned; oven off, photoionisation beam closed")
    return wait(1.0)


def stop_loading(ctx: RecoveryContext) -> StepResult:
    """Tidy-up after a failed or pre-empted reload: oven off, photoionisation beam closed."""
    s = ctx.settings
    ctx.set(f"{s.pi_shutter}.open", False)
    _oven(ctx, False)
    return done("oven off, photoionisation beam closed")


def verify_single_ion(ctx: RecoveryContext) -> StepResult:
    """The count level says one ion (not two, not a hot cloud); for a chain, each ion's pixel
    counted says the chain is whole."""
    s = ctx.settings
    if s.chain_ions > 1:
        n = ctx.ions_fluorescing()
        if n != s.chain_ions:
            return fail(f"{n} of {s.chain_ions} ions fluoresce: the chain is not whole")
        return done(f"{n} ions counted: the chain is whole")
    rate = ctx.lab.read(COUNT_RATE)
    net = rate - (s.fluorescence_threshold / 6)  # background is well below the threshold
    if net > 1.6 * s.single_ion_rate:
        return fail(f"{rate:.0f} counts/s: more than one ion")
    if rate < s.fluorescence_threshold:
        return fail(f"{rate:.0f} counts/s: no ion")
    return done(f"{rate:.0f} counts/s: one ion")


def recool(ctx: RecoveryContext) -> StepResult:
    """Let the cooling light cool the new ion before it is probed."""
    if ctx.first:
        return wait(ctx.settings.recool_time, "Doppler cooling")
    return done("cooled")


@dataclass
class CurrentSweep:
    """Progress of one mode search, kept in the step's scratch between calls."""

    parameter: str  # `<laser>.current`
    setpoint_a: float  # where the laser was, and is put back
    floor_a: float  # the lowest current the instrument's limits allow (-inf: unknown)
    current_a: float
    tries: int = 0  # sweeps finished
    excursion_a: float = 0.0  # of the present sweep
    phase: str = "down"  # down, up, check
    invalid_reads: int = 0
    last_error_hz: float = math.nan  # target − wavemeter after the last sweep


def _wavemeter_error(ctx: RecoveryContext, s: AuxLockSettings) -> float | None:
    """Target − wavemeter reading of the aux lock's laser (Hz); None when the exposure is bad."""
    try:
        frequency = ctx.lab.read(wavemeter_frequency(s.wavemeter, s.wavemeter_channel))
    except SignalInvalid:
        return None
    if not math.isfinite(frequency) or frequency <= 0:
        return None
    return s.target - frequency


def _ma(amps: float) -> str:
    return f"{amps * 1e3:.2f} mA"


def _missed(sweep: CurrentSweep) -> str:
    if not math.isfinite(sweep.last_error_hz):
        return ""
    return f" (still {sweep.last_error_hz / 1e9:+.2f} GHz from target)"


def _sweep_note(s: AuxLockSettings, sweep: CurrentSweep) -> str:
    """One audit line per sweep (the engine records a wait's note when it changes)."""
    return (
        f"sweep {sweep.tries + 1} of {s.mode_search_tries}: {s.laser} current "
        f"{_ma(sweep.setpoint_a)} → {_ma(sweep.setpoint_a - sweep.excursion_a)} and back, "
        f"wavemeter lock stopped{_missed(sweep)}"
    )


def _back_to_setpoint(ctx: RecoveryContext, sweep: CurrentSweep) -> str:
    """Put the set point back if it moved; '' when done, else why not (the playbook's abort
    tries again: `ctx.restore` still holds it)."""
    if sweep.current_a != sweep.setpoint_a:
        try:
            ctx.set(sweep.parameter, sweep.setpoint_a)
        except LabError as exc:
            return f"; restoring {_ma(sweep.setpoint_a)} failed: {exc}"
        sweep.current_a = sweep.setpoint_a
    ctx.restore.pop(sweep.parameter, None)
    return ""


def _plan_sweep(ctx: RecoveryContext, s: AuxLockSettings, sweep: CurrentSweep) -> StepResult:
    """The next sweep, deeper than the last, within the limits; or give up."""
    laser = s.laser
    missed = _missed(sweep)
    if sweep.tries >= s.mode_search_tries:
        note = _back_to_setpoint(ctx, sweep)
        return give_up(
            f"{laser}: {sweep.tries} current sweeps, the last {_ma(sweep.excursion_a)} deep, did "
            f"not bring it back within the wavemeter lock's capture range{missed}{note}"
        )
    wanted = min(
        s.mode_search_excursion + sweep.tries * s.mode_search_deepen, s.mode_search_max_excursion
    )
    room = sweep.setpoint_a - sweep.floor_a
    if room < s.mode_search_excursion - 1e-9:
        note = _back_to_setpoint(ctx, sweep)
        return give_up(
            f"{laser}: a mode search sweeps the current {_ma(s.mode_search_excursion)} below its "
            f"{_ma(sweep.setpoint_a)} set point, but its lower current limit is "
            f"{_ma(sweep.floor_a)}: not sweeping{missed}{note}"
        )
    if room < wanted and room <= sweep.excursion_a + 1e-9:
        note = _back_to_setpoint(ctx, sweep)
        return give_up(
            f"{laser}: {sweep.tries} sweeps did not bring it back{missed} and its lower current "
            f"limit {_ma(sweep.floor_a)} allows none deeper than {_ma(sweep.excursion_a)}{note}"
        )
    sweep.excursion_a = min(wanted, room)
    sweep.phase = "down"
    sweep.invalid_reads = 0
    return wait(0.0, _sweep_note(s, sweep))


def mode_search(ctx: RecoveryContext) -> StepResult:
    """Bring a hopped diode laser back to its mode the way a lab does: with its wavemeter lock
    stopped, sweep the diode current down through the hop and back to its set point (an ECDL
    mode hop is hysteretic: below the hop region the laser drops back to its own mode and stays
    there on the way up), then the wavemeter must show it within the lock's capture range.
    A miss is swept again deeper, up to `mode_search_tries` sweeps and never below the
    instrument's current limit; then it gives up (escalation). The sweep is steps of
    `mode_search_step` every `mode_search_dwell`: one lab call per call of the step."""
    aux = ctx.auxes[ctx.target]
    s = aux.settings
    sweep = ctx.scratch.get("sweep")
    if not isinstance(sweep, CurrentSweep):
        aux.stop()
        error = _wavemeter_error(ctx, s)
        if error is not None and abs(error) <= s.capture_range:
            return done(
                f"{s.laser} {error / 1e6:+.0f} MHz from target, within the capture range: "
                "no sweep needed"
            )
        parameter = diode_current(s.laser)
        current = ctx.lab.read(parameter)
        setpoint = ctx.restore.setdefault(parameter, current)  # a cut-short sweep's comes first
        limits = parameter_limits(ctx.lab, parameter)
        floor = limits[0] if limits is not None else -math.inf
        sweep = CurrentSweep(parameter, setpoint, floor, current_a=current)
        ctx.scratch["sweep"] = sweep
        return _plan_sweep(ctx, s, sweep)
    step = s.mode_search_step
    if sweep.phase in ("down", "up"):
        if sweep.phase == "down":
            bottom = sweep.setpoint_a - sweep.excursion_a
            target = max(bottom, sweep.current_a - step)
        else:
            target = sweep.current_a + step
            if target >= sweep.setpoint_a - 1e-9:
                target = sweep.setpoint_a  # exactly the set point it had
        try:
            ctx.set(sweep.parameter, target)
        except LabRefused as exc:
            note = _back_to_setpoint(ctx, sweep)
            return give_up(
                f"{s.laser}: the driver host refused current {_ma(target)} ({exc}); set point "
                f"{_ma(sweep.setpoint_a)} restored, no further sweep{note}"
            )
        sweep.current_a = target
        if sweep.phase == "down" and target <= sweep.setpoint_a - sweep.excursion_a + 1e-12:
            sweep.phase = "up"
        elif sweep.phase == "up" and target == sweep.setpoint_a:
            sweep.phase = "check"
            return wait(s.mode_search_settle, _sweep_note(s, sweep))
        return wait(s.mode_search_dwell, _sweep_note(s, sweep))
    error = _wavemeter_error(ctx, s)
    if error is None:
        sweep.invalid_reads += 1
        if sweep.invalid_reads >= 5:
            return fail(f"wavemeter channel {s.wavemeter_channel} invalid after the sweep")
        return wait(0.5)
    sweep.tries += 1
    sweep.last_error_hz = error
    if abs(error) <= s.capture_range:
        ctx.restore.pop(sweep.parameter, None)
        return done(
            f"{s.laser} back on its mode after a {_ma(sweep.excursion_a)} current sweep "
            f"(sweep {sweep.tries}): {error / 1e6:+.0f} MHz from target, "
            f"set point {_ma(sweep.setpoint_a)} restored"
        )
    return _plan_sweep(ctx, s, sweep)


def restore_set_points(ctx: RecoveryContext) -> StepResult:
    """Tidy-up after a failed or pre-empted sweep: the laser back at its set point."""
    restored = []
    for parameter, value in list(ctx.restore.items()):
        ctx.set(parameter, value)
        del ctx.restore[parameter]
        restored.append(f"{parameter} {value:g}")
    return done(f"restored {', '.join(restored)}" if restored else "nothing to restore")


def mode_search_timeout_s(s: AuxLockSettings) -> float:
    """Time for every sweep at its deepest, with ~0.25 s of lab round trip per current step."""
    steps = 2 * s.mode_search_max_excursion / s.mode_search_step + 2
    per_sweep = steps * (s.mode_search_dwell + 0.25) + s.mode_search_settle + 5.0
    return s.mode_search_tries * per_sweep + 10.0


def wavemeter_relock(ctx: RecoveryContext) -> StepResult:
    """Restart the wavemeter PI lock and step it fast until it holds the target."""
    aux = ctx.auxes[ctx.target]
    if ctx.first:
        aux.start()
    aux.step()
    if aux.state == "locked":
        ctx.scratch["locked"] = ctx.scratch.get("locked", 0) + 1
        if ctx.scratch["locked"] >= 2:
            aux.next_due = ctx.clock.now() + aux.settings.update_period
            return done(f"{ctx.target} lock holds")
    elif aux.state in ("out_of_capture", "railed"):
        return fail(f"{ctx.target} lock {aux.state}")
    return wait(0.5)


def verify_fluorescence(ctx: RecoveryContext) -> StepResult:
    """The ion scatters again; if not, the ion-loss playbook (already tripped) takes over."""
    if ctx.ion_present():
        return done("fluorescence back")
    waited = ctx.clock.now() - ctx.scratch.setdefault("t0", ctx.clock.now())
    if waited >= 3.0:
        return done("no fluorescence: the ion-loss playbook takes over")
    return wait(0.5)


def relock_cavity(ctx: RecoveryContext) -> StepResult:
    """Start the reference-cavity relock (lock_enabled True again) and wait until locked."""
    laser = ctx.lock.settings.cavity_laser
    if ctx.first:
        ctx.set(f"{laser}.lock_enabled", False)
        ctx.set(f"{laser}.lock_enabled", True)
        return wait(1.0, "cavity relock started")
    if ctx.lab.read(cavity_signal(laser)) >= 2:
        return done("cavity locked")
    return wait(1.0)


def verify_cavity_mode(ctx: RecoveryContext) -> StepResult:
    """Same cavity mode as before? Compare the comb measurement with the one before the fault;
    a different mode (or none to compare with) means the line must be searched for again."""
    before = ctx.reference_optical_hz
    record = ctx.lock.measure_optical_frequency()
    if before is None or record is None:
        ctx.force_reacquire = True
        return done("no comb comparison: the line will be searched for")
    jump = record.laser_frequency_hz - before
    if abs(jump) > 1e3:
        ctx.force_reacquire = True
        return done(f"laser moved {jump:.3g} Hz: another cavity mode, re-acquiring the line")
    return done(f"same cavity mode ({jump:+.1f} Hz)")


def rf_safe_ramp(ctx: RecoveryContext) -> StepResult:
    """RF back on at low power, then up in steps to the operating power."""
    s = ctx.settings
    power = ctx.scratch.get("power")
    if power is None:
        power = s.rf_ramp_start
        ctx.set(f"{s.rf_drive}.power", power)
        ctx.set(f"{s.rf_drive}.output", True)
    else:
        power = min(s.rf_power, power + s.rf_ramp_step)
        ctx.set(f"{s.rf_drive}.power", power)
    ctx.scratch["power"] = power
    if power >= s.rf_power:
        return done(f"RF at {power:g} dBm")
    return wait(s.rf_ramp_interval)


def check_ion(ctx: RecoveryContext) -> StepResult:
    present = ctx.ion_present()
    return done("the ion survived" if present else "the ion is gone: reloading")


def ion_missing(ctx: RecoveryContext) -> bool:
    return not ctx.ion_present()


def _driver_host(ctx: RecoveryContext) -> str:
    """The host a driver_stale playbook is about (its target; the daemon's own by default)."""
    return ctx.target or ctx.settings.driver_process


def restart_driver_host(ctx: RecoveryContext) -> StepResult:
    name = _driver_host(ctx)
    if ctx.restart_process is None:
        return fail(f"no supervisor to restart the driver host '{name}'")
    ctx.restart_process(name)
    return done(f"asked the supervisor to restart '{name}'")


def await_heartbeat(ctx: RecoveryContext) -> StepResult:
    host = _driver_host(ctx)
    if ctx.health.severity(heartbeat_signal(ctx.settings, host)) is not Severity.INVALID:
        return done(f"driver host '{host}' heartbeat back")
    return wait(0.5)


def verify_instruments(ctx: RecoveryContext) -> StepResult:
    value = ctx.lab.read(rf_signal(ctx.settings))
    return done(f"instruments answer (RF output {value:g})")


def verify_served(host: str, signals: tuple[str, ...]) -> StepAction:
    """The verify step of another driver host: read the first watched signal it serves."""

    def verify(ctx: RecoveryContext) -> StepResult:
        for signal in signals:
            value = ctx.lab.read(signal)
            return done(f"'{host}' instruments answer ({signal} {value:g})")
        return done(f"'{host}' heartbeat back (the servo reads none of its instruments)")

    return verify


def dc_compensation_scan(ctx: RecoveryContext) -> StepResult:
    """Minimise micromotion: per DC channel, β² at v−δ, v, v+δ is a parabola; go to its minimum."""
    s = ctx.settings
    index = ctx.scratch.get("channel", 0)
    if index >= len(s.dc_channels):
        return done("DC electrodes re-compensated")
    channel = s.dc_channels[index]
    param = f"{s.dc_electrodes}.ch{channel:02d}.voltage"
    v0 = ctx.lab.read(param)
    d = s.dc_scan_step
    beta2 = []
    for v in (v0 - d, v0, v0 + d):
        ctx.set(param, v)
        beta2.append(ctx.lab.read(MICROMOTION_SIGNAL) ** 2)
    curvature = beta2[0] - 2 * beta2[1] + beta2[2]
    if curvature > 0:
        best = v0 + d * (beta2[0] - beta2[2]) / (2 * curvature)
    else:
        best = (v0 - d, v0, v0 + d)[min(range(3), key=beta2.__getitem__)]
    ctx.set(param, best)
    ctx.scratch["channel"] = index + 1
    return wait(0.0, f"ch{channel:02d}: {v0:.4f} V → {best:.4f} V")


def measure_micromotion(ctx: RecoveryContext) -> StepResult:
    beta = ctx.lab.read(MICROMOTION_SIGNAL)
    ctx.health.observe(MICROMOTION, beta)
    return done(f"micromotion index {beta:.3f}")


# --------------------------------------------------------------------------------------------
# The standard set


def standard_playbooks(
    settings: RecoverySettings,
    aux: dict[str, AuxLockSettings],
    cavity_laser: str,
    driver_hosts: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Playbook]:
    """One playbook per fault of the autonomy issue, bounded by the config's PlaybookSettings.
    `driver_hosts` (host -> the instruments it serves, from the lab file): a stale-driver
    playbook for each host besides the daemon's own (`driver_process`), restarting that host
    and holding the lock and the jobs until its heartbeat and instruments are back."""

    def cfg(kind: str) -> PlaybookSettings:
        return settings.playbooks.get(kind, PlaybookSettings())

    fluorescence_low = Condition(FLUORESCENCE, BAD, 0.0)
    fluorescence_ok = Condition(FLUORESCENCE, GOOD, 1.0)
    ion = cfg("ion_loss")
    reload_steps = (
        Step("reload", reload_ion, timeout_s=max(ion.step_timeout, 240.0)),
        Step("verify_single_ion", verify_single_ion, timeout_s=10.0),
        Step("recool", recool, timeout_s=30.0),
    )
    books = [
        Playbook(
            "driver_stale",
            "driver_stale",
            0,
            trip=(Condition(HEARTBEAT, STALE),),
            resume=(Condition(HEARTBEAT, GOOD, 1.0),),
            steps=(
                Step("restart_driver_host", restart_driver_host, 10.0),
                Step("await_heartbeat", await_heartbeat, cfg("driver_stale").step_timeout),
                Step("verify_instruments", verify_instruments, 10.0),
            ),
            settings=cfg("driver_stale"),
        ),
        *_other_driver_hosts(settings, aux, cavity_laser, driver_hosts or {}, cfg("driver_stale")),
        Playbook(
            "rf_trip",
            "rf_trip",
            1,
            trip=(Condition(rf_signal(settings), BAD),),
            resume=(Condition(rf_signal(settings), GOOD, 0.0), fluorescence_ok),
            steps=(
                Step("rf_safe_ramp", rf_safe_ramp, 60.0),
                Step("check_ion", check_ion, 10.0),
                *(
                    Step(st.name, st.action, st.timeout_s, when=ion_missing if i == 0 else None)
                    for i, st in enumerate(reload_steps)
                ),
            ),
            settings=cfg("rf_trip"),
            abort=stop_loading,
        ),
        Playbook(
            "cavity_unlock",
            "cavity_unlock",
            2,
            trip=(Condition(cavity_signal(cavity_laser), BAD),),
            resume=(Condition(cavity_signal(cavity_laser), GOOD, 1.0),),
            steps=(
                Step("relock_cavity", relock_cavity, cfg("cavity_unlock").step_timeout),
                Step("verify_cavity_mode", verify_cavity_mode, 10.0),
            ),
            settings=cfg("cavity_unlock"),
        ),
    ]
    for loop, loop_settings in aux.items():
        books.append(
            Playbook(
                f"mode_hop:{loop}",
                "mode_hop",
                3,
                trip=(Condition(aux_error_signal(loop), BAD),),
                resume=(Condition(aux_error_signal(loop), GOOD, 0.0),),
                steps=(
                    Step("mode_search", mode_search, mode_search_timeout_s(loop_settings)),
                    Step("wavemeter_relock", wavemeter_relock, 15.0),
                    Step("verify_fluorescence", verify_fluorescence, 10.0),
                ),
                settings=cfg("mode_hop"),
                target=loop,
                abort=restore_set_points,
            )
        )
    books.append(
        Playbook(
            "ion_loss",
            "ion_loss",
            4,
            trip=(fluorescence_low,),
            resume=(fluorescence_ok,),
            steps=(Step("repump_check", repump_check, 10.0), *reload_steps),
            settings=ion,
            abort=stop_loading,
        )
    )
    books.append(
        Playbook(
            "stray_field",
            "stray_field",
            5,
            trip=(Condition(MICROMOTION, BAD, 0.0),),
            resume=(Condition(MICROMOTION, GOOD, 0.0),),
            steps=(
                Step("dc_compensation_scan", dc_compensation_scan, cfg("stray_field").step_timeout),
                Step("measure_micromotion", measure_micromotion, 30.0),
            ),
            settings=cfg("stray_field"),
            period_s=settings.dc_compensation_period,
        )
    )
    return [b for b in books if b.settings.enabled]


def _other_driver_hosts(
    settings: RecoverySettings,
    aux: dict[str, AuxLockSettings],
    cavity_laser: str,
    driver_hosts: Mapping[str, tuple[str, ...]],
    book: PlaybookSettings,
) -> list[Playbook]:
    """`driver_stale:<host>` for each driver host but the daemon's own: trips when that host's
    heartbeat is stale, names it in every step, reads back a watched signal it serves."""
    watched = [
        rf_signal(settings),
        cavity_signal(cavity_laser),
        *(wavemeter_frequency(s.wavemeter, s.wavemeter_channel) for s in aux.values()),
        COUNT_RATE,
    ]
    books = []
    for host, instruments in driver_hosts.items():
        if host == settings.driver_process:
            continue
        beat = heartbeat_signal(settings, host)
        served = tuple(s for s in watched if s.partition(".")[0] in instruments)
        books.append(
            Playbook(
                f"driver_stale:{host}",
                "driver_stale",
                0,
                trip=(Condition(beat, STALE),),
                resume=(Condition(beat, GOOD, 1.0),),
                steps=(
                    Step("restart_driver_host", restart_driver_host, 10.0),
                    Step("await_heartbeat", await_heartbeat, book.step_timeout),
                    Step("verify_instruments", verify_served(host, served), 10.0),
                ),
                settings=book,
                target=host,
            )
        )
    return books


def holdover_error_hz(settings: RecoverySettings, paused_s: float) -> float:
    """Predicted error of the steer after `paused_s` of hold-over (drift-estimate uncertainty)."""
    return settings.holdover_drift_uncertainty * max(0.0, paused_s)


def within_line(settings: RecoverySettings, paused_s: float, half_width_hz: float) -> bool:
    return holdover_error_hz(settings, paused_s) <= settings.holdover_line_fraction * half_width_hz
