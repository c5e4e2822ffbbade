"""What the locks publish, as typed records, and the publisher protocol they are handed to.

The lead wires an `Outputs` to the bus: each record names its topic (`servo.<loop>.<quantity>`)
and `fields()` gives the payload values. Records are small frozen dataclasses with slots: the
clock lock makes one per update, ~4·10⁴ per simulated day.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal, Protocol, TypeVar

LockStateName = Literal["acquiring", "locked", "holdover", "unlocked"]
AuxStateName = Literal["locked", "relocking", "railed", "out_of_capture", "invalid", "stopped"]


@dataclass(frozen=True, slots=True)
class ClockUpdate:
    """One servo update: the error signal and the correction it caused."""

    topic: ClassVar[str] = "servo.clock.update"
    t_s: float  # clock time at the end of the update
    wall_ns: int
    excitation_low: float  # p̄₋, fraction excited on the low-frequency side
    excitation_high: float  # p̄₊
    error_hz: float  # δν̂, light above the line > 0
    correction_hz: float  # applied step of the AOM frequency (−g·δν̂)
    aom_frequency_hz: float  # AOM frequency now (line centre estimate)
    drift_hz_per_s: float  # clock-laser drift estimate (feed-forward ramp is its negative)
    n_probes: int  # per side

    def fields(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LockStateChanged:
    """The clock lock changed state (an event)."""

    topic: ClassVar[str] = "servo.clock.state"
    t_s: float
    wall_ns: int
    previous: LockStateName
    state: LockStateName
    reason: str

    def fields(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class OpticalFrequency:
    """The clock laser measured through the comb, ν = n·f_rep + s₁·f_ceo + s₂·f_beat, and the
    light at the ion (ν + f_AOM, the clock output)."""

    topic: ClassVar[str] = "servo.clock.optical_frequency"
    t_s: float
    wall_ns: int
    mode_number: int
    repetition_rate_hz: float
    offset_frequency_hz: float
    beat_frequency_hz: float
    laser_frequency_hz: float
    output_frequency_hz: float

    def fields(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AuxLockUpdate:
    """One step of a wavemeter lock."""

    topic: ClassVar[str] = "servo.aux.update"
    t_s: float
    wall_ns: int
    loop: str
    state: AuxStateName
    frequency_hz: float  # wavemeter reading (nan when invalid)
    error_hz: float  # target − reading
    piezo_voltage_v: float

    def fields(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ServoAlarm:
    """Something a person or the recovery layer must know: railing, timeouts, a lost line,
    a rejected persisted state; or only informational (OK: a fresh start without state)."""

    topic: ClassVar[str] = "servo.alarm"
    t_s: float
    wall_ns: int
    loop: str
    kind: str  # railed, relock_timeout, out_of_capture, invalid_timeout, line_not_found, ...
    severity: Literal["OK", "MINOR", "MAJOR"]
    message: str

    def fields(self) -> dict[str, object]:
        return asdict(self)


_R = TypeVar("_R")

ServoRecord = ClockUpdate | LockStateChanged | OpticalFrequency | AuxLockUpdate | ServoAlarm


class Outputs(Protocol):
    """Where the locks put their records; must not block (the bus publisher queues or drops)."""

    def publish(self, record: ServoRecord) -> None: ...


class NullOutputs:
    """Publishes nothing (accelerated simulation that reads the lock directly)."""

    def publish(self, record: ServoRecord) -> None:
        return None


class RecordingOutputs:
    """Keeps the newest records in memory (tests, the simulation's frequency record)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.records: deque[ServoRecord] = deque(maxlen=maxlen)

    def publish(self, record: ServoRecord) -> None:
        self.records.append(record)

    def of_type(self, kind: type[_R]) -> list[_R]:
        return [r for r in self.records if isinstance(r, kind)]
