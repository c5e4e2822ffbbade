"""The two seams the servo is written against, so the same lock runs live over the bus and in
accelerated simulation: a clock (`ionpilot.core.clock.Clock`: `now`, `wall_ns`) and the lab.

The lab interface is kept small and physical. Signal and parameter names are
`<instrument>.<parameter>` as the drivers publish them (`laser_369.piezo_voltage`,
`comb.repetition_rate`); the helpers below build the ones the servo uses, so the live
implementation has one place to map them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ionpilot.servo.interrogation import ProbeSpec


class LabError(Exception):
    """The lab could not do what was asked (instrument timeout, refused command)."""


class SignalInvalid(LabError):
    """A reading exists but means nothing now (wavemeter underexposed, comb unlocked)."""


class IonNotFluorescing(LabError):
    """The shots of an interrogation showed no cooling fluorescence (the ion is lost or in a dark
    state): their clock outcomes mean nothing and were discarded."""


class LabRefused(LabError):
    """The lab refused a set as unsafe or malformed (out of its limits, forbidden): nothing was
    applied, and asking again the same way cannot help (unlike a timeout)."""


class LabInterface(Protocol):
    """What the servo needs from the lab. Calls block for the lab time they take."""

    def interrogate(self, probe: ProbeSpec, aom_frequency_hz: float, n_probes: int) -> int:
        """Run `n_probes` clock cycles (cool, prepare, probe with the clock AOM at
        `aom_frequency_hz`, detect) and return how many found the ion excited (dark)."""
        ...

    def set_clock_aom_frequency(self, frequency_hz: float) -> None:
        """Steer the clock light between interrogations (hold-over, parked output)."""
        ...

    def read(self, signal: str) -> float:
        """The present value of a signal in SI units; raises SignalInvalid or LabError."""
        ...

    def set(self, parameter: str, value: float) -> None:
        """Set a parameter in SI units; raises LabError when refused (nothing applied)."""
        ...

    def is_ion_present(self) -> bool:
        """Cooling fluorescence above background at the single-ion level."""
        ...


@runtime_checkable
class KnowsLimits(Protocol):
    """A lab that can say what a parameter may be set to (the driver host's safety limits)."""

    def limits(self, parameter: str) -> tuple[float, float] | None:
        """(min, max) a set of `parameter` may request now, in SI units; None if unknown."""
        ...


def parameter_limits(lab: object, parameter: str) -> tuple[float, float] | None:
    """The lab's limits of `parameter` if it can tell (None otherwise: a set may be refused)."""
    if isinstance(lab, KnowsLimits):
        return lab.limits(parameter)
    return None


def wavemeter_frequency(wavemeter: str, channel: int) -> str:
    """Optical frequency (Hz) of the laser on one fibre-switch channel."""
    return f"{wavemeter}.ch{channel}.frequency"


def piezo_voltage(laser: str) -> str:
    """A diode laser's piezo voltage set point (V)."""
    return f"{laser}.piezo_voltage"


def diode_current(laser: str) -> str:
    """A diode laser's current set point (A)."""
    return f"{laser}.current"


def comb_repetition_rate(comb: str) -> str:
    return f"{comb}.repetition_rate"


def comb_offset_frequency(comb: str) -> str:
    return f"{comb}.offset_frequency"


def beat_frequency(counter: str) -> str:
    """The clock laser's beat with the nearest comb tooth (Hz)."""
    return f"{counter}.frequency"
