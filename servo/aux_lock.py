"""Wavemeter PI lock of a diode laser through its piezo (cooling 369 nm, repump 935 nm).

Velocity form: each step moves the piezo by kp·Δe + ki·e·dt (e = target − reading), clipped to
`max_step`, clamped to the piezo rails. Beyond `capture_range` the lock does not move (a mode
hop of GHz needs a mode search, not a PI); it alarms when railed, when the error stays outside
`tolerance` longer than `relock_timeout`, and when the wavemeter stays invalid.
"""

from __future__ import annotations

import math

from ionpilot.core.clock import Clock
from ionpilot.servo.outputs import AuxLockUpdate, AuxStateName, NullOutputs, Outputs, ServoAlarm
from ionpilot.servo.seams import LabError, LabInterface, SignalInvalid, piezo_voltage
from ionpilot.servo.seams import wavemeter_frequency as wavemeter_signal
from ionpilot.servo.settings import AuxLockSettings


class AuxLock:
    """One wavemeter lock, step-based like the clock lock (`step()` every `update_period`)."""

    def __init__(
        self,
        name: str,
        settings: AuxLockSettings,
        lab: LabInterface,
        clock: Clock,
        outputs: Outputs | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.lab = lab
        self.clock = clock
        self.outputs: Outputs = outputs if outputs is not None else NullOutputs()
        self.state: AuxStateName = "stopped"
        self.lent = False  # stopped for a borrower: not restarted until given back
        self.piezo_v = math.nan
        self.clipped_steps = 0
        self.next_due = -math.inf
        self._signal = wavemeter_signal(settings.wavemeter, settings.wavemeter_channel)
        self._piezo = piezo_voltage(settings.laser)
        self._last_error: float | None = None
        self._last_t = math.nan
        self._outside_since: float | None = None
        self._invalid_since: float | None = None
        self._alarmed: set[str] = set()

    def start(self) -> None:
        """Take over the piezo from where it is."""
        self.piezo_v = self.lab.read(self._piezo)
        self._last_error = None
        self._outside_since = None
        self._invalid_since = None
        self._alarmed.clear()
        self.lent = False
        self.state = "relocking"
        self.next_due = self.clock.now()

    def stop(self, *, lent: bool = False) -> None:
        """Let go of the piezo. `lent`: on purpose, for a borrower; the lock thread's retry of
        a lock that could not start leaves it alone until `start` (the laser given back)."""
        self.state = "stopped"
        self.lent = lent

    def _alarm(self, kind: str, severity: str, message: str) -> None:
        if kind in self._alarmed:
            return
        self._alarmed.add(kind)
        self.outputs.publish(
            ServoAlarm(
                self.clock.now(),
                self.clock.wall_ns(),
                self.name,
                kind,
                "MAJOR" if severity == "MAJOR" else "MINOR",
                message,
            )
        )

    def _publish(self, now: float, frequency: float, error: float) -> AuxLockUpdate:
        record = AuxLockUpdate(
            now, self.clock.wall_ns(), self.name, self.state, frequency, error, self.piezo_v
        )
        self.outputs.publish(record)
        return record

    def step(self) -> AuxLockUpdate | None:
        """Read the wavemeter once and move the piezo once."""
        if self.state == "stopped":
            return None
        s = self.settings
        now = self.clock.now()
        self.next_due = now + s.update_period
        try:
            frequency = self.lab.read(self._signal)
        except SignalInvalid as exc:
            return self._invalid(now, str(exc))
        except LabError as exc:
            return self._invalid(now, f"wavemeter unreadable: {exc}")
        if not math.isfinite(frequency) or frequency <= 0:
            return self._invalid(now, "wavemeter reading is not a frequency")
        self._invalid_since = None
        self._alarmed.discard("invalid_timeout")
        error = s.target - frequency
        if abs(error) > s.capture_range:
            self.state = "out_of_capture"
            self._last_error = None
            self._alarm(
                "out_of_capture",
                "MAJOR",
                f"{self.name}: {error / 1e9:+.2f} GHz from target, beyond the "
                f"{s.capture_range / 1e9:.1f} GHz capture range (mode hop?)",
            )
            return self._publish(now, frequency, error)
        self._alarmed.discard("out_of_capture")
        dt = now - self._last_t if math.isfinite(self._last_t) else s.update_period
        dt = min(max(dt, 0.0), 10 * s.update_period)
        if self._last_error is None:
            step = s.proportional_gain * error + s.integral_gain * error * dt
        else:
            step = s.proportional_gain * (error - self._last_error) + s.integral_gain * error * dt
        if abs(step) > s.max_step:
            step = math.copysign(s.max_step, step)
            self.clipped_steps += 1
        target_v = self.piezo_v + step
        railed = not s.piezo_min <= target_v <= s.piezo_max
        self.piezo_v = min(max(target_v, s.piezo_min), s.piezo_max)
        try:
            self.lab.set(self._piezo, self.piezo_v)
        except LabError as exc:
            self._alarm("piezo_refused", "MAJOR", f"{self.name}: piezo set refused: {exc}")
        self._last_error = error
        self._last_t = now
        if railed:
            self.state = "railed"
            self._alarm(
                "railed",
                "MAJOR",
                f"{self.name}: piezo at its rail ({self.piezo_v:.1f} V); needs a current "
                "change or a mode search",
            )
        elif abs(error) <= s.tolerance:
            self.state = "locked"
            self._alarmed.discard("railed")
        else:
            self.state = "relocking"
        if abs(error) <= s.tolerance:
            self._outside_since = None
            self._alarmed.discard("relock_timeout")
        else:
            if self._outside_since is None:
                self._outside_since = now
            if now - self._outside_since > s.relock_timeout:
                self._alarm(
                    "relock_timeout",
                    "MAJOR",
                    f"{self.name}: {error / 1e6:+.1f} MHz from target for more than "
                    f"{s.relock_timeout:.0f} s",
                )
        return self._publish(now, frequency, error)

    def _invalid(self, now: float, why: str) -> AuxLockUpdate:
        self.state = "invalid"
        self._last_error = None
        if self._invalid_since is None:
            self._invalid_since = now
        if now - self._invalid_since >= self.settings.invalid_timeout:
            self._alarm("invalid_timeout", "MAJOR", f"{self.name}: {why}")
        return self._publish(now, math.nan, math.nan)
