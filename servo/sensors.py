"""The health monitor's eyes on the lab: the watched signals read once per `health_period`,
whichever lab is behind the seam (the bus live, the World in process on virtual time)."""

from __future__ import annotations

import math
from collections.abc import Callable

from ionpilot.servo.health import HealthMonitor
from ionpilot.servo.playbooks import (
    COUNT_RATE,
    FLUORESCENCE,
    HEARTBEAT,
    MICROMOTION,
    MICROMOTION_SIGNAL,
    aux_error_signal,
    cavity_signal,
    rf_signal,
)
from ionpilot.servo.seams import LabError, LabInterface, SignalInvalid, wavemeter_frequency
from ionpilot.servo.settings import AuxLockSettings, RecoverySettings


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
