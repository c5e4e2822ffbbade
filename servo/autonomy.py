"""Unattended operation on virtual time: the clock lock, the wavemeter locks, the health monitor
and the recovery engine together against the simulated lab, under a campaign of faults.

`LabSensors` reads the watched signals from any `LabInterface`; `run_autonomy` is the loop of
`ionpilot clock-sim --faults` and of the tests. While a recovery runs the lock is not stepped:
it holds over on its steer line (a line in time), exactly as the live daemon does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ionpilot.servo.audit import AuditLog
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.health import HealthMonitor
from ionpilot.servo.playbooks import (
    COUNT_RATE,
    FLUORESCENCE,
    HEARTBEAT,
    MICROMOTION,
    MICROMOTION_SIGNAL,
    aux_error_signal,
    cavity_signal,
    default_rules,
    rf_signal,
    standard_playbooks,
)
from ionpilot.servo.recovery import JobsHook, RecoveryEngine
from ionpilot.servo.seams import LabError, LabInterface, SignalInvalid, wavemeter_frequency
from ionpilot.servo.settings import (
    AuxLockSettings,
    ClockLockSettings,
    FaultScenarioSettings,
    HealthRule,
    RecoverySettings,
)
from ionpilot.servo.simulation import FaultyWorldLab, WorldClock, WorldLike
from ionpilot.servo.uptime import UptimeAccount

DRIVER_CRASH = "driver_crash"  # a process fault the adapter applies (the World has none)


class LabSensors:
    """Reads the watched signals into the health monitor once per `health_period`. A signal
    that cannot be read is not observed and goes stale; an invalid reading is INVALID. The
    driver host's liveness is `alive()` if given, else whether any reading came back."""

    def __init__(
        self,
        lab: LabInterface,
        health: HealthMonitor,
        settings: RecoverySettings,
        aux: dict[str, AuxLockSettings],
        *,
        cavity_laser: str,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.lab = lab
        self.health = health
        self.period = settings.health_period
        self.micromotion_period = settings.micromotion_period
        self.alive = alive
        self.next_at = -math.inf
        self.next_micromotion = -math.inf
        self._aux = [
            (aux_error_signal(loop), wavemeter_frequency(s.wavemeter, s.wavemeter_channel), s)
            for loop, s in aux.items()
        ]
        self._plain = [
            (cavity_signal(cavity_laser), cavity_signal(cavity_laser)),
            (rf_signal(settings), rf_signal(settings)),
            (FLUORESCENCE, COUNT_RATE),
        ]

    def __call__(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.period
        health = self.health
        if self.alive is not None:
            if not self.alive():
                return  # nothing answers: every signal goes stale
            health.observe(HEARTBEAT, 1.0, now)
        read = self.lab.read
        answered = False
        for name, signal in self._plain:
            try:
                health.observe(name, read(signal), now)
                answered = True
            except SignalInvalid as exc:
                health.observe_invalid(name, str(exc), now)
                answered = True
            except LabError:
                pass
        for name, signal, s in self._aux:
            try:
                health.observe(name, s.target - read(signal), now)
                answered = True
            except SignalInvalid as exc:
                health.observe_invalid(name, str(exc), now)
                answered = True
            except LabError:
                pass
        if self.alive is None and answered:
            health.observe(HEARTBEAT, 1.0, now)  # live: the driver host answers
        if now >= self.next_micromotion and MICROMOTION in health.signals:
            self.next_micromotion = now + self.micromotion_period
            try:
                health.observe(MICROMOTION, read(MICROMOTION_SIGNAL))
            except LabError:
                pass


@dataclass(frozen=True)
class FaultEvent:
    """One fault of a campaign at a world time."""

    at_s: float
    kind: str  # a World fault kind, or driver_crash
    target: str | None = None


def periodic_events(scenario: FaultScenarioSettings, hours: float) -> list[FaultEvent]:
    """The periodic campaign over `hours`, as single events."""
    end = hours * 3600.0
    plan = [
        (scenario.first_ion_loss, scenario.ion_loss_every, "ion_loss", None),
        (scenario.first_cooling_mode_hop, scenario.cooling_mode_hop_every, "mode_hop", "laser_369"),
        (scenario.first_repump_mode_hop, scenario.repump_mode_hop_every, "mode_hop", "laser_935"),
        (scenario.first_cavity_unlock, scenario.cavity_unlock_every, "cavity_unlock", None),
        (scenario.first_rf_trip, scenario.rf_trip_every, "rf_trip", None),
        (scenario.first_driver_crash, scenario.driver_crash_every, DRIVER_CRASH, None),
        (
            scenario.first_stray_field_step,
            scenario.stray_field_step_every,
            "stray_field_step",
            None,
        ),
    ]
    events = []
    for first, every, kind, target in plan:
        if every <= 0:
            continue
        t = first
        while t < end:
            events.append(FaultEvent(t, kind, target))
            t += every
    return sorted(events, key=lambda e: e.at_s)


@dataclass
class AutonomyRun:
    """Everything a run leaves behind, for the figures and the tests."""

    lock: ClockLock
    lab: FaultyWorldLab
    engine: RecoveryEngine
    health: HealthMonitor
    audit: AuditLog
    uptime: UptimeAccount
    auxes: dict[str, AuxLock]
    events: list[FaultEvent] = field(default_factory=list)
    jobs_log: list[tuple[float, bool, str]] = field(default_factory=list)


def build(
    world: WorldLike,
    lock_settings: ClockLockSettings,
    recovery: RecoverySettings,
    aux: dict[str, AuxLockSettings],
    seed: int = 1,
    *,
    rules: dict[str, HealthRule] | None = None,
    audit_path: str | Path = ":memory:",
    wavemeter_invalid_fraction: float | None = None,
    hold_jobs: JobsHook | None = None,
) -> AutonomyRun:
    """The whole autonomous servo on a World (not started)."""
    fraction = (
        recovery.scenario.wavemeter_invalid_fraction
        if wavemeter_invalid_fraction is None
        else wavemeter_invalid_fraction
    )
    lab = FaultyWorldLab(
        world,
        seed,
        wavemeter_invalid_fraction=fraction,
        supervisor_restart_s=recovery.restart_backoff_initial + 5.0,
        record_truth=False,
    )
    clock = WorldClock(world)
    lock = ClockLock(lock_settings, lab, clock)
    auxes = {name: AuxLock(name, s, lab, clock) for name, s in aux.items()}
    all_rules = default_rules(recovery, aux, lock_settings.cavity_laser)
    all_rules.update(rules or {})
    health = HealthMonitor(all_rules, clock)
    audit = AuditLog(clock, audit_path)
    uptime = UptimeAccount(clock.now())
    jobs_log: list[tuple[float, bool, str]] = []

    def jobs(hold: bool, reason: str) -> None:
        jobs_log.append((clock.now(), hold, reason))
        if hold_jobs is not None:
            hold_jobs(hold, reason)

    sensors = LabSensors(
        lab, health, recovery, aux, cavity_laser=lock_settings.cavity_laser, alive=lab.host_up
    )
    engine = RecoveryEngine(
        standard_playbooks(recovery, aux, lock_settings.cavity_laser),
        recovery,
        health,
        lock=lock,
        lab=lab,
        clock=clock,
        auxes=auxes,
        audit=audit,
        uptime=uptime,
        sense=sensors,
        hold_jobs=jobs,
        restart_process=lab.restart_process,
    )
    return AutonomyRun(lock, lab, engine, health, audit, uptime, auxes, jobs_log=jobs_log)


def schedule(run: AutonomyRun, world: Any, events: list[FaultEvent], offset_s: float = 0.0) -> None:
    """World faults go to the World's schedule; driver crashes to the adapter."""
    crashes = []
    for e in events:
        if e.kind == DRIVER_CRASH:
            crashes.append(offset_s + e.at_s)
        else:
            world.schedule(offset_s + e.at_s, e.kind, e.target)
    run.lab.schedule_crashes(crashes)
    run.events.extend(events)


def start(run: AutonomyRun) -> None:
    for aux in run.auxes.values():
        aux.start()
    run.lock.start()


def step_until(run: AutonomyRun, world: WorldLike, end_s: float) -> None:
    """Drive everything until world time `end_s`."""
    engine, lock, uptime = run.engine, run.lock, run.uptime
    auxes = list(run.auxes.values())
    now = world.now
    advance = world.advance
    tick = engine.tick
    observe = uptime.observe
    lock_step = lock.step
    locked = LockState.LOCKED
    acquiring = LockState.ACQUIRING
    while True:
        t = now()
        if t >= end_s:
            break
        wait_s = tick()
        for aux in auxes:  # the wavemeter locks run through recoveries (unless one stops them)
            if t >= aux.next_due and aux.state != "stopped":
                aux.step()
        if engine.busy:
            advance(min(max(wait_s, 0.0), end_s - t))
            observe(now(), False)
            continue
        state = lock.state
        if state is locked or state is acquiring:
            lock_step()
        else:
            advance(min(max(wait_s, 0.01), end_s - t))
        observe(now(), lock.state is locked)


def run_autonomy(
    world: WorldLike,
    lock_settings: ClockLockSettings,
    recovery: RecoverySettings,
    aux: dict[str, AuxLockSettings],
    *,
    hours: float,
    seed: int = 1,
    events: list[FaultEvent] | None = None,
    audit_path: str | Path = ":memory:",
) -> tuple[AutonomyRun, dict[str, Any]]:
    """Run `hours` under the campaign (default: the config's periodic scenario) and summarise:
    the keys `ionpilot clock-sim --faults` adds to its JSON."""
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    run = build(world, lock_settings, recovery, aux, seed, audit_path=audit_path)
    campaign = periodic_events(recovery.scenario, hours) if events is None else events
    schedule(run, world, campaign)
    start(run)
    t0 = world.now()
    step_until(run, world, t0 + hours * 3600.0)
    wall = time.perf_counter() - wall0
    return run, summarise(run, world, hours, wall, time.process_time() - cpu0)


def summarise(
    run: AutonomyRun, world: WorldLike, hours: float, wall_s: float, cpu_s: float
) -> dict[str, Any]:
    now = world.now()
    injected: dict[str, int] = {}
    for e in run.events:
        kind = "driver_stale" if e.kind == DRIVER_CRASH else e.kind
        injected[kind] = injected.get(kind, 0) + 1
    engine = run.engine
    return {
        "sim_hours": hours,
        "sim_days": hours / 24.0,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "speedup": hours * 3600.0 / wall_s if wall_s > 0 else math.inf,
        "final_state": run.lock.state.value,
        "uptime": run.uptime.uptime,
        "locked_s": run.uptime.locked_s,
        "faults": run.uptime.summary(),
        "injected": dict(sorted(injected.items())),
        "escalations": engine.escalation_count,
        "escalation_log": engine.escalations,
        "stuck": engine.stuck(now),
        "in_progress": engine.in_progress(),
        "safe_state": engine.safe,
        "driver_crashes": run.lab.crashes,
        "driver_restart_requests": run.lab.restart_requests,
        "wavemeter_invalid_fraction": run.lab.wavemeter_invalid_fraction,
        "audit_entries": run.audit.count,
        "updates": run.lock.updates,
        "ions_present": int(sum(world.present)),
    }
