"""Unattended operation on virtual time: the daemon's servo with its health monitor and
recovery engine (`assemble_servo`, as the `daemon` process builds it) against the World in
process, under a campaign of faults, and the figures `ionpilot clock-sim --faults` prints.

World faults go to the World's own schedule; the driver host crashing is the lab adapter's
(`WorldLab`). The loop is the daemon's `LockCycle`, napping on virtual time (harness.virtual).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ionpilot.harness.lab import WorldLab
from ionpilot.harness.virtual import VirtualServo, assemble_on_world, run_until
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.audit import AuditLog
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock
from ionpilot.servo.health import HealthMonitor
from ionpilot.servo.recovery import JobsHook, RecoveryEngine
from ionpilot.servo.settings import (
    AuxLockSettings,
    ClockLockSettings,
    FaultScenarioSettings,
    HealthRule,
    HealthSettings,
    PulseCalibration,
    RecoverySettings,
)
from ionpilot.servo.uptime import UptimeAccount
from ionpilot.sim.world import World

DRIVER_CRASH = "driver_crash"  # a process fault the adapter applies (the World has none)


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
class Campaign:
    """The servo under a campaign and everything it leaves behind, for the figures and tests."""

    virtual: VirtualServo
    lock: ClockLock
    lab: WorldLab
    engine: RecoveryEngine
    health: HealthMonitor
    audit: AuditLog
    uptime: UptimeAccount
    auxes: dict[str, AuxLock]
    events: list[FaultEvent] = field(default_factory=list)
    jobs_log: list[tuple[float, bool, str]] = field(default_factory=list)


def build(
    world: World,
    lock_settings: ClockLockSettings,
    recovery: RecoverySettings,
    aux: dict[str, AuxLockSettings],
    seed: int = 1,
    *,
    rules: dict[str, HealthRule] | None = None,
    audit_path: str | Path = ":memory:",
    wavemeter_invalid_fraction: float | None = None,
    hold_jobs: JobsHook | None = None,
    pulses: PulseCalibration | None = None,
    device: DeviceSettings | None = None,
    limits: dict[str, tuple[float, float]] | None = None,
    driver_hosts: Mapping[str, tuple[str, ...]] | None = None,
) -> Campaign:
    """The daemon's servo with recovery on a World (not started: `start`)."""
    fraction = (
        recovery.scenario.wavemeter_invalid_fraction
        if wavemeter_invalid_fraction is None
        else wavemeter_invalid_fraction
    )
    jobs_log: list[tuple[float, bool, str]] = []

    def jobs(hold: bool, reason: str) -> None:
        jobs_log.append((world.now(), hold, reason))
        if hold_jobs is not None:
            hold_jobs(hold, reason)

    vs = assemble_on_world(
        world,
        lock_settings,
        aux,
        pulses=pulses,
        device=device,
        recovery=recovery,
        health=HealthSettings(rules=dict(rules or {})),
        seed=seed,
        audit_path=audit_path,
        hold_jobs=jobs,
        wavemeter_invalid_fraction=fraction,
        record_truth=False,
        limits=limits,
        driver_hosts=driver_hosts,
    )
    engine = vs.servo.recovery
    assert engine is not None  # assembled with a recovery section
    return Campaign(
        virtual=vs,
        lock=vs.servo.lock,
        lab=vs.lab,
        engine=engine.engine,
        health=engine.health,
        audit=engine.audit,
        uptime=engine.uptime,
        auxes={a.name: a for a in vs.servo.auxes},
        jobs_log=jobs_log,
    )


def schedule(run: Campaign, events: list[FaultEvent], offset_s: float = 0.0) -> None:
    """World faults go to the World's schedule; driver crashes to the adapter."""
    crashes = []
    for e in events:
        if e.kind == DRIVER_CRASH:
            crashes.append(offset_s + e.at_s)
        else:
            run.virtual.world.schedule(offset_s + e.at_s, e.kind, e.target)
    run.lab.schedule_crashes(crashes)
    run.events.extend(events)


def start(run: Campaign) -> None:
    run.virtual.servo.cycle.start()


def go_until(run: Campaign, end_s: float) -> None:
    """The daemon's lock cycle until world time `end_s`."""
    run_until(run.virtual, end_s)


def run_campaign(
    world: World,
    lock_settings: ClockLockSettings,
    recovery: RecoverySettings,
    aux: dict[str, AuxLockSettings],
    *,
    hours: float,
    seed: int = 1,
    events: list[FaultEvent] | None = None,
    audit_path: str | Path = ":memory:",
    pulses: PulseCalibration | None = None,
    device: DeviceSettings | None = None,
    rules: dict[str, HealthRule] | None = None,
) -> tuple[Campaign, dict[str, Any]]:
    """Run `hours` under the campaign (default: the config's periodic scenario) and summarise:
    the keys `ionpilot clock-sim --faults` adds to its JSON."""
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    run = build(
        world,
        lock_settings,
        recovery,
        aux,
        seed,
        audit_path=audit_path,
        pulses=pulses,
        device=device,
        rules=rules,
    )
    campaign = periodic_events(recovery.scenario, hours) if events is None else events
    schedule(run, campaign)
    start(run)
    go_until(run, world.now() + hours * 3600.0)
    wall = time.perf_counter() - wall0
    return run, summarise(run, world, hours, wall, time.process_time() - cpu0)


def summarise(
    run: Campaign, world: World, hours: float, wall_s: float, cpu_s: float
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
