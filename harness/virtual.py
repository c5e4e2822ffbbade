"""The daemon's servo on virtual time: `assemble_servo` (exactly as the `daemon` process builds
it) on the World in process, driven by advancing the World's clock by what `LockCycle.cycle()`
asks to nap. There is no other lock loop: what the month in seconds proves is what runs live."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ionpilot.harness.lab import WorldLab, world_clock
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.assembly import Servo, assemble_servo
from ionpilot.servo.outputs import ClockUpdate, LockStateChanged, ServoRecord
from ionpilot.servo.recovery import JobsHook
from ionpilot.servo.settings import (
    AuxLockSettings,
    ClockLockSettings,
    HealthSettings,
    PulseCalibration,
    RecoverySettings,
)
from ionpilot.sim.world import World

STALL_CYCLES = 10_000  # cycles in a row without virtual time passing: a loop that cannot progress


class StalledLoop(RuntimeError):
    """The lock cycle asked for no nap and consumed no lab time, again and again (a bug)."""


@dataclass
class Trace:
    """What the servo published, as the harness keeps it: the frequency record (one point per
    locked update: time, fractional offset of the light from the ion, drift estimate) and the
    lock-state changes."""

    lab: WorldLab
    clock_frequency_hz: float
    t_s: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    drift_hz_per_s: list[float] = field(default_factory=list)
    states: list[tuple[float, str, str]] = field(default_factory=list)  # (t, state, reason)

    def publish(self, record: ServoRecord) -> None:
        if isinstance(record, ClockUpdate):
            truth = self.lab.detunings
            if len(truth) >= 2:
                self.t_s.append(record.t_s)
                self.y.append((truth[-1] + truth[-2]) / (2 * self.clock_frequency_hz))
                self.drift_hz_per_s.append(record.drift_hz_per_s)
            if len(truth) > 4096:
                del truth[:-2]
        elif isinstance(record, LockStateChanged):
            self.states.append((record.t_s, record.state, record.reason))


@dataclass
class VirtualServo:
    """The assembled servo on the World, with its lab and what it published."""

    world: World
    lab: WorldLab
    servo: Servo
    trace: Trace


def assemble_on_world(
    world: World,
    lock_settings: ClockLockSettings,
    aux_locks: dict[str, AuxLockSettings],
    *,
    pulses: PulseCalibration | None = None,
    device: DeviceSettings | None = None,
    recovery: RecoverySettings | None = None,
    health: HealthSettings | None = None,
    seed: int = 1,
    audit_path: str | Path = ":memory:",
    hold_jobs: JobsHook | None = None,
    wavemeter_invalid_fraction: float = 0.0,
    record_truth: bool = True,
    limits: dict[str, tuple[float, float]] | None = None,
    driver_hosts: Mapping[str, tuple[str, ...]] | None = None,
) -> VirtualServo:
    """The daemon's servo (`assemble_servo`) against the World in process (not started)."""
    clock = world_clock(world)
    calibration = pulses or PulseCalibration()
    restart_s = (recovery.restart_backoff_initial + 5.0) if recovery is not None else 6.0
    lab = WorldLab(
        world,
        calibration,
        device,
        seed,
        pulser=lock_settings.pulser,
        record_truth=record_truth,
        wavemeter_invalid_fraction=wavemeter_invalid_fraction,
        supervisor_restart_s=restart_s,
        limits=limits,
    )
    trace = Trace(lab, lock_settings.clock_frequency)
    servo = assemble_servo(
        lab=lab,
        shots=lab.shots,
        clock=clock,  # virtual: the ManualClock the World moves
        lock_settings=lock_settings,
        pulses=calibration,
        aux_locks=aux_locks,
        recovery=recovery,
        health=health,
        outputs=trace,
        audit_path=audit_path,
        hold_jobs=hold_jobs,
        restart_process=lab.restart_process,
        alive=lab.host_up,
        driver_hosts=driver_hosts,
    )
    return VirtualServo(world, lab, servo, trace)


def run_until(
    vs: VirtualServo, end_s: float, on_cycle: Callable[[float], None] | None = None
) -> None:
    """Step the servo's `LockCycle` until world time `end_s`, napping on virtual time."""
    world = vs.world
    now = world_clock(world).now
    advance = world.advance
    cycle = vs.servo.cycle.cycle
    stalled = 0
    while True:
        t = now()
        if t >= end_s:
            return
        nap = cycle()
        if nap > 0:
            advance(min(nap, max(0.0, end_s - now())))
        if now() > t:
            stalled = 0
        else:
            stalled += 1
            if stalled >= STALL_CYCLES:
                raise StalledLoop(
                    f"the lock cycle made no progress for {stalled} cycles at t = {t:.3f} s "
                    f"(state {vs.servo.lock.state.value})"
                )
        if on_cycle is not None:
            on_cycle(t)
