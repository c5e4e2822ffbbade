"""Geometry of one clock interrogation: where to probe, how steep the line is there, how long a
probe cycle takes and what quantum projection noise allows (REFERENCE.md §1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ionpilot.servo.settings import ClockLockSettings, PulseCalibration

# Rabi π pulse of length t: probe points ±0.3993/t, slope 1.897·t per Hz, QPN 0.2636/(ν₀·t).
RABI_HALF_WIDTH = 0.3993
RABI_SLOPE = 1.897
RABI_FWHM = 0.7987
RABI_QPN = 0.2636


@dataclass(frozen=True)
class ProbeSpec:
    """One kind of probe pulse: a Rabi π pulse of `pulse_time_s`, or Ramsey π/2 pulses of
    `pulse_time_s` around a free evolution of `dark_time_s`; `overhead_s` is cool+prepare+detect."""

    kind: Literal["rabi", "ramsey"]
    pulse_time_s: float
    overhead_s: float
    dark_time_s: float = 0.0

    @property
    def effective_time_s(self) -> float:
        """t for Rabi; T_eff = T + 4τ/π for Ramsey."""
        if self.kind == "rabi":
            return self.pulse_time_s
        return self.dark_time_s + 4 * self.pulse_time_s / math.pi

    @property
    def probe_duration_s(self) -> float:
        if self.kind == "rabi":
            return self.pulse_time_s
        return self.dark_time_s + 2 * self.pulse_time_s

    @property
    def cycle_time_s(self) -> float:
        """T_c: one probe including its overhead (cooling, state preparation, detection)."""
        return self.probe_duration_s + self.overhead_s

    @property
    def half_width_hz(self) -> float:
        """Detuning of the two probe points from the line centre."""
        if self.kind == "rabi":
            return RABI_HALF_WIDTH / self.pulse_time_s
        return 1 / (4 * self.effective_time_s)

    @property
    def slope_per_hz(self) -> float:
        """|dP/dν| at a probe point: 1.897·t (Rabi) or π·T_eff (Ramsey)."""
        if self.kind == "rabi":
            return RABI_SLOPE * self.pulse_time_s
        return math.pi * self.effective_time_s

    @property
    def fwhm_hz(self) -> float:
        """Full width of the central feature (Rabi line, Ramsey fringe)."""
        if self.kind == "rabi":
            return RABI_FWHM / self.pulse_time_s
        return 1 / (2 * self.effective_time_s)

    def qpn_coefficient(self, clock_frequency_hz: float, n_ions: int = 1) -> float:
        """σ_y(τ)·√τ at the projection-noise limit with one probe of N ions per cycle T_c."""
        if self.kind == "rabi":
            per_probe = RABI_QPN / (clock_frequency_hz * self.pulse_time_s)
        else:
            per_probe = 1 / (2 * math.pi * clock_frequency_hz * self.effective_time_s)
        return per_probe * math.sqrt(self.cycle_time_s / n_ions)

    def error_hz(self, excited_low: int, excited_high: int, n_probes: int) -> float:
        """Frequency error δν̂ = (p̄₋ − p̄₊)/(2S): positive when the light is above the line."""
        return (excited_low - excited_high) / (n_probes * 2 * self.slope_per_hz)


def lock_probe(settings: ClockLockSettings) -> ProbeSpec:
    """The probe the lock runs with, from the config."""
    if settings.interrogation == "rabi":
        return ProbeSpec("rabi", settings.probe_time, settings.cycle_overhead)
    return ProbeSpec(
        "ramsey", settings.ramsey_pulse_time, settings.cycle_overhead, settings.ramsey_dark_time
    )


def acquisition_probes(settings: ClockLockSettings) -> list[ProbeSpec]:
    """Centring stages after a line search, widest first, ending one step before the lock's
    own probe: a short Rabi pulse, then (for Ramsey) the Rabi π pulse of `probe_time`, whose
    line is narrow enough to land inside the central fringe."""
    stages = [ProbeSpec("rabi", settings.acquisition_probe_time, settings.cycle_overhead)]
    if settings.interrogation == "ramsey":
        stages.append(ProbeSpec("rabi", settings.probe_time, settings.cycle_overhead))
    return stages


def update_interval_s(settings: ClockLockSettings) -> float:
    """Nominal time of one servo update: n probes on each side."""
    return 2 * settings.probes_per_side * lock_probe(settings).cycle_time_s


def servo_time_constant_s(settings: ClockLockSettings) -> float:
    """≈ T_update/g (REFERENCE.md §1)."""
    return update_interval_s(settings) / settings.gain


def shared_time_constant_s(settings: ClockLockSettings) -> float:
    """The servo time constant allowed while user jobs share the controller (the setting, or
    three times the lock's own)."""
    return settings.shared_time_constant or 3 * servo_time_constant_s(settings)


def min_interrogation_rate_hz(settings: ClockLockSettings) -> float:
    """Interrogations (one side's probes) per second the lock needs to keep its shared time
    constant τ: an update is two interrogations and the time constant T_update / gain, so
    r = 2 / (gain · τ)."""
    return 2 / (settings.gain * shared_time_constant_s(settings))


def clock_duty(settings: ClockLockSettings, pulses: PulseCalibration) -> float:
    """The share of the pulse controller the clock keeps while user jobs wait: its minimum
    interrogation rate times what one interrogation costs the controller, its probes and one
    fluorescence check (`presence_count_time`). The check is a clock job too: with the ion
    bright, the recovery's sensor pass counts once per lock cycle (one update: two
    interrogations). Reserving one per interrogation doubles that; the unused half is the margin
    that absorbs the share's credit swing (about one user slice), so the rate stays at or above
    `min_interrogation_rate_hz`. Default lab: 1/3 interrogation/s of 1 s of probes and 0.05 s
    of count, 0.35 of the controller rather than 0.333."""
    interrogation_s = settings.probes_per_side * lock_probe(settings).cycle_time_s
    return min_interrogation_rate_hz(settings) * (interrogation_s + pulses.presence_count_time)
