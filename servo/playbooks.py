"""Declarative recovery playbooks (Bluesky suspenders with plans): a trip condition, a resume
condition, ordered steps each with a timeout, bounded retries and escalation.

A step is a small function of the `RecoveryContext` that does a little and says DONE, WAIT (call
me again in so many seconds) or FAIL; the engine (`recovery.py`) enforces its timeout. Lab calls
block for the lab time they take, so the same playbooks run live and on virtual time. Parameter
names are the drivers' (`oven.ch1.current`, `shutter_399.open`, `laser_435.lock_state`).

Fault signatures and recovery times: REFERENCE.md §3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ionpilot.bus.clock import Clock
from ionpilot.bus.units import Quantity
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock
from ionpilot.servo.health import HealthMonitor, Severity
from ionpilot.servo.seams import LabInterface
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
MICROMOTION_SIGNAL = "trap.micromotion_index"  # lab signal: modulation index β (sideband probe)


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


def done(note: str = "") -> StepResult:
    return StepResult(StepStatus.DONE, 0.0, note)


def wait(seconds: float, note: str = "") -> StepResult:
    return StepResult(StepStatus.WAIT, seconds, note)


def fail(note: str) -> StepResult:
    return StepResult(StepStatus.FAIL, 0.0, note)


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
        return self.lab.is_ion_present()


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
    settings: RecoverySettings, aux: dict[str, AuxLockSettings], cavity_laser: str
) -> dict[str, HealthRule]:
    """Rules for the signals the playbooks watch."""
    threshold = settings.fluorescence_threshold
    rules = {
        FLUORESCENCE: HealthRule(
            lolo=_q(threshold, "1/s"),
            hysteresis=_q(0.1 * threshold, "1/s"),
            stale_after=5.0,
            debounce=0.5,
        ),
        HEARTBEAT: HealthRule(stale_after=settings.heartbeat_stale_after),
        cavity_signal(cavity_laser): HealthRule(lolo=_q(1.5, "1"), stale_after=5.0),
        rf_signal(settings): HealthRule(lolo=_q(0.5, "1"), stale_after=5.0),
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
    """The count level says one ion (not two, not a hot cloud)."""
    s = ctx.settings
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


def mode_search(ctx: RecoveryContext) -> StepResult:
    """Bring a hopped laser back to its mode: the laser's relock sweep (`<laser>.mode_search`)
    with its wavemeter lock stopped so the two do not fight."""
    aux = ctx.auxes[ctx.target]
    aux.stop()
    ctx.set(f"{aux.settings.laser}.mode_search", True)
    return done(f"{aux.settings.laser} relock sweep finished")


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


def restart_driver_host(ctx: RecoveryContext) -> StepResult:
    name = ctx.settings.driver_process
    if ctx.restart_process is None:
        return fail("no supervisor to restart the driver host")
    ctx.restart_process(name)
    return done(f"asked the supervisor to restart '{name}'")


def await_heartbeat(ctx: RecoveryContext) -> StepResult:
    if ctx.health.severity(HEARTBEAT) is not Severity.INVALID:
        return done("driver host heartbeat back")
    return wait(0.5)


def verify_instruments(ctx: RecoveryContext) -> StepResult:
    value = ctx.lab.read(rf_signal(ctx.settings))
    return done(f"instruments answer (RF output {value:g})")


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
    settings: RecoverySettings, aux: dict[str, AuxLockSettings], cavity_laser: str
) -> list[Playbook]:
    """One playbook per fault of the autonomy issue, bounded by the config's PlaybookSettings."""

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
    for loop in aux:
        books.append(
            Playbook(
                f"mode_hop:{loop}",
                "mode_hop",
                3,
                trip=(Condition(aux_error_signal(loop), BAD),),
                resume=(Condition(aux_error_signal(loop), GOOD, 0.0),),
                steps=(
                    Step("mode_search", mode_search, 30.0),
                    Step("wavemeter_relock", wavemeter_relock, 15.0),
                    Step("verify_fluorescence", verify_fluorescence, 10.0),
                ),
                settings=cfg("mode_hop"),
                target=loop,
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


def holdover_error_hz(settings: RecoverySettings, paused_s: float) -> float:
    """Predicted error of the steer after `paused_s` of hold-over (drift-estimate uncertainty)."""
    return settings.holdover_drift_uncertainty * max(0.0, paused_s)


def within_line(settings: RecoverySettings, paused_s: float, half_width_hz: float) -> bool:
    return holdover_error_hz(settings, paused_s) <= settings.holdover_line_fraction * half_width_hz
