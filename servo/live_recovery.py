"""The health monitor and the recovery engine of the daemon, against whatever lab is behind the
seam (the bus live, the World in process on virtual time), publishing `health.<signal>`, `health.aggregate`,
`servo.uptime` and every audit entry as an event (`evt.daemon.<kind>`).

The daemon's loop calls `tick()` before each lock step and skips the step while `busy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ionpilot.core.clock import Clock
from ionpilot.servo.audit import AuditEntry, AuditLog
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.health import HealthMonitor, Severity
from ionpilot.servo.interrogation import ProbeSpec
from ionpilot.servo.ion_watch import IonWatch
from ionpilot.servo.playbooks import COUNT_RATE, default_rules, standard_playbooks
from ionpilot.servo.recovery import JobsHook, RecoveryEngine, RestartHook
from ionpilot.servo.seams import LabError, LabInterface, SignalInvalid, parameter_limits
from ionpilot.servo.sensors import LabSensors
from ionpilot.servo.settings import HealthSettings, PulseCalibration, RecoverySettings
from ionpilot.servo.uptime import UptimeAccount

Publish = Callable[[str, dict[str, object]], None]
PublishEvent = Callable[[str, str, str, dict[str, Any]], None]


@runtime_checkable
class CountsFluorescence(Protocol):
    """A lab that counts the cooled fluorescence itself (the live one, through the sequencer)."""

    def count_rate(self) -> float: ...


class LiveLab:
    """The daemon's lab seam plus the signals the sensors read that are not one parameter:
    the cooled fluorescence rate is a count over `presence_count_time` on the pulser."""

    def __init__(
        self,
        lab: LabInterface,
        pulses: PulseCalibration,
        pulser: str,
        read_flag: Callable[[str], bool] | None = None,
    ) -> None:
        self.lab = lab
        self.pulses = pulses
        self.pulser = pulser
        self.read_flag = read_flag  # on/off parameters (rf_drive.output) the seam refuses

    def interrogate(self, probe: ProbeSpec, aom_frequency_hz: float, n_probes: int) -> int:
        return self.lab.interrogate(probe, aom_frequency_hz, n_probes)

    def set_clock_aom_frequency(self, frequency_hz: float) -> None:
        self.lab.set_clock_aom_frequency(frequency_hz)

    def read(self, signal: str) -> float:
        if signal == COUNT_RATE:
            if isinstance(self.lab, CountsFluorescence):  # live: a clock job, not a gate write
                return self.lab.count_rate()
            duration = self.pulses.presence_count_time
            self.lab.set(f"{self.pulser}.count_duration", duration)
            return self.lab.read(f"{self.pulser}.counts") / duration
        try:
            return self.lab.read(signal)
        except SignalInvalid:
            if self.read_flag is None:
                raise
            return 1.0 if self.read_flag(signal) else 0.0

    def set(self, parameter: str, value: float) -> None:
        self.lab.set(parameter, value)

    def limits(self, parameter: str) -> tuple[float, float] | None:
        return parameter_limits(self.lab, parameter)

    def is_ion_present(self) -> bool:
        return self.lab.is_ion_present()


class LiveRecovery:
    """Health, recovery, audit and uptime for the daemon's lock and aux locks."""

    def __init__(
        self,
        *,
        lab: LabInterface,
        lock: ClockLock,
        auxes: list[AuxLock],
        clock: Clock,
        pulses: PulseCalibration,
        recovery: RecoverySettings,
        health: HealthSettings,
        audit_path: str | Path,
        publish: Publish | None,
        publish_event: PublishEvent,
        hold_jobs: JobsHook | None = None,
        restart_process: RestartHook | None = None,
        read_flag: Callable[[str], bool] | None = None,
        alive: Callable[[], bool] | None = None,
        driver_hosts: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        """`driver_hosts` (host -> its instruments, from the lab file): each host's heartbeat
        is watched and has its own stale-driver playbook (the daemon's own host always)."""
        self.clock = clock
        self.lock = lock
        self._publish = publish
        self._publish_event = publish_event
        live = LiveLab(lab, pulses, lock.settings.pulser, read_flag)
        aux = {a.name: a.settings for a in auxes}
        rules = default_rules(recovery, aux, lock.settings.cavity_laser, driver_hosts)
        rules.update(health.rules)
        self.audit = AuditLog(clock, audit_path, sinks=[self._event])
        self.health = HealthMonitor(
            rules,
            clock,
            sink=publish,
            on_acknowledge=lambda s, who, sev: None,
        )
        # the clock shots' cooling windows on the fluorescence signal (the daemon hands this
        # to its BusLab): an ion loss is seen within one pulser run, not at the next sensor pass
        self.ion_watch = IonWatch(
            self.health, clock, pulses, count_rate=lambda: live.read(COUNT_RATE)
        )
        self.uptime = UptimeAccount(clock.now())
        sensors = LabSensors(
            live, self.health, recovery, aux, cavity_laser=lock.settings.cavity_laser, alive=alive
        )
        self.engine = RecoveryEngine(
            standard_playbooks(recovery, aux, lock.settings.cavity_laser, driver_hosts),
            recovery,
            self.health,
            lock=lock,
            lab=live,
            clock=clock,
            auxes={a.name: a for a in auxes},
            audit=self.audit,
            uptime=self.uptime,
            sense=sensors,
            hold_jobs=hold_jobs,
            # the supervisor restarts a dead host by itself (exit or silent heartbeat); asking
            # again is harmless, so without a hook the request is only recorded
            restart_process=restart_process or (lambda name: None),
        )
        self._next_uptime = -math.inf
        self.next_tick_s = recovery.health_period  # what the engine asked for last

    def _event(self, entry: AuditEntry) -> None:
        severity = "MAJOR" if entry.severity == "ALERT" else entry.severity
        if severity not in ("OK", "MINOR", "MAJOR", "INVALID"):
            severity = "OK"
        data: dict[str, Any] = {
            "action": entry.action,
            "alert": entry.severity == "ALERT",
            "source": entry.source,
        }
        self._publish_event(
            f"recovery_{entry.kind}", f"{entry.action}: {entry.reason}", severity, data
        )

    @property
    def busy(self) -> bool:
        return self.engine.busy

    def tick(self) -> bool:
        """One round of health and recovery; True while the lock must not be stepped."""
        try:
            self.next_tick_s = self.engine.tick()
        except LabError as exc:  # a sensor or step error outside the guarded paths
            self.audit.record("lab_error", "tick", str(exc), severity="MINOR")
            self.next_tick_s = self.engine.settings.health_period
        now = self.clock.now()
        self.uptime.observe(now, self.lock.state is LockState.LOCKED)
        if now >= self._next_uptime:
            self._next_uptime = now + 10.0
            if self._publish is not None:
                self._publish("servo.uptime", dict(self.uptime.fields()))
            self.health.publish()
        return self.engine.busy

    def acknowledge(self, who: str, signals: list[str] | None = None) -> list[str]:
        return self.engine.acknowledge(who, signals)

    def operator_resume(self, who: str) -> None:
        self.engine.operator_resume(who)

    def status(self) -> dict[str, object]:
        worst = self.health.aggregate
        return {
            "health": worst.name,
            "recovering": self.engine.active.playbook.name if self.engine.active else "",
            "safe_state": self.engine.safe,
            "uptime": self.uptime.uptime,
            "unacknowledged": ",".join(self.health.unacknowledged()),
            "alarm": worst >= Severity.MAJOR,
        }

    def close(self) -> None:
        self.audit.close()
