"""The servo as the `daemon` process assembles it, whatever lab and clock it runs against: the
clock lock, the wavemeter locks, the health monitor and recovery engine (when the lab file has a
`recovery:` section) and the `LockCycle` that steps them. The live daemon calls this with the bus
lab and the system clock; the harness (ionpilot.harness) with the World in process and virtual
time, so a simulated month runs exactly the daemon's decisions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ionpilot.core.clock import Clock
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock
from ionpilot.servo.clock_shots import ClockShots
from ionpilot.servo.live_recovery import LiveRecovery, Publish, PublishEvent
from ionpilot.servo.lock_cycle import LockCycle
from ionpilot.servo.outputs import Outputs
from ionpilot.servo.persistence import StateStore
from ionpilot.servo.recovery import JobsHook, RestartHook
from ionpilot.servo.seams import LabInterface
from ionpilot.servo.settings import (
    AuxLockSettings,
    ClockLockSettings,
    HealthSettings,
    PulseCalibration,
    RecoverySettings,
)

Guarded = Callable[[Callable[[], object], str], None]


@dataclass
class Servo:
    """The assembled servo: step it with `cycle.cycle()` and nap for what it returns."""

    lock: ClockLock
    auxes: list[AuxLock]
    recovery: LiveRecovery | None
    cycle: LockCycle


def _no_event(kind: str, message: str, severity: str, data: dict[str, Any]) -> None:
    """Nothing listens (virtual time without a bus)."""


def _unguarded(action: Callable[[], object], what: str) -> None:
    action()


def assemble_servo(
    *,
    lab: LabInterface,
    shots: ClockShots | None,
    clock: Clock,
    lock_settings: ClockLockSettings,
    pulses: PulseCalibration,
    aux_locks: dict[str, AuxLockSettings],
    recovery: RecoverySettings | None,
    health: HealthSettings | None = None,
    outputs: Outputs | None = None,
    store: StateStore | None = None,
    audit_path: str | Path = ":memory:",
    publish: Publish | None = None,
    publish_event: PublishEvent | None = None,
    hold_jobs: JobsHook | None = None,
    restart_process: RestartHook | None = None,
    read_flag: Callable[[str], bool] | None = None,
    alive: Callable[[], bool] | None = None,
    guarded: Guarded = _unguarded,
    beat: Callable[[str], None] = lambda state: None,
    driver_hosts: Mapping[str, tuple[str, ...]] | None = None,
) -> Servo:
    """Build the daemon's servo on `lab` and `clock` (not started: `cycle.start()`).
    `shots` is the lab's clock-shot player, whose cooling windows feed the ion watch."""
    lock = ClockLock(lock_settings, lab, clock, outputs, store)
    auxes = [AuxLock(name, s, lab, clock, outputs) for name, s in aux_locks.items()]
    engine: LiveRecovery | None = None
    if recovery is not None:
        engine = LiveRecovery(
            lab=lab,
            lock=lock,
            auxes=auxes,
            clock=clock,
            pulses=pulses,
            recovery=recovery,
            health=health or HealthSettings(),
            audit_path=audit_path,
            publish=publish,  # None: nothing listens (virtual time without a bus)
            publish_event=publish_event or _no_event,
            hold_jobs=hold_jobs,
            restart_process=restart_process,
            read_flag=read_flag,
            alive=alive,
            driver_hosts=driver_hosts,
        )
        if shots is not None:
            shots.ion_watch = engine.ion_watch  # the shots feed its health
    cycle = LockCycle(lock, auxes, clock, engine, guarded=guarded, beat=beat)
    return Servo(lock, auxes, engine, cycle)
