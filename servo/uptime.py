"""Uptime accounting: time locked over time elapsed, and time to recover per fault.

Fed by the loop that runs the lock (`observe(t, locked)` after each step) and by the recovery
engine (`fault_*`). Time to recover runs from the trip to the moment the clock is locked again
(or, if the lock was not locked when the fault tripped, to the end of the playbook).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass
class FaultRecord:
    """One fault from trip to its end."""

    kind: str
    playbook: str
    tripped_s: float
    finished_s: float | None = None  # playbook done (resume condition met)
    recovered_s: float | None = None  # clock locked again
    escalated: bool = False
    reason: str = ""

    @property
    def time_to_recover_s(self) -> float | None:
        if self.recovered_s is None:
            return None
        return self.recovered_s - self.tripped_s


class UptimeAccount:
    """Locked time, elapsed time, and the fault records."""

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.locked_s = 0.0
        self._last_t = start_s
        self._locked = False
        self.faults: list[FaultRecord] = []

    def observe(self, t: float, locked: bool) -> None:
        """The lock state at clock time t (the interval since the last call had the old one)."""
        if t > self._last_t:
            if self._locked:
                self.locked_s += t - self._last_t
            self._last_t = t
        self._locked = locked

    def elapsed_s(self) -> float:
        return self._last_t - self.start_s

    @property
    def uptime(self) -> float:
        elapsed = self.elapsed_s()
        return self.locked_s / elapsed if elapsed > 0 else 0.0

    def fault_tripped(self, kind: str, playbook: str, t: float, reason: str) -> FaultRecord:
        record = FaultRecord(kind, playbook, t, reason=reason)
        self.faults.append(record)
        return record

    def summary(self) -> dict[str, dict[str, object]]:
        """Per kind: count, recovered, escalated, mttr_s {median, max}."""
        out: dict[str, dict[str, object]] = {}
        for kind in sorted({f.kind for f in self.faults}):
            records = [f for f in self.faults if f.kind == kind]
            times = [t for f in records if (t := f.time_to_recover_s) is not None]
            out[kind] = {
                "count": len(records),
                "recovered": sum(1 for f in records if f.recovered_s is not None),
                "escalated": sum(1 for f in records if f.escalated),
                "mttr_s": {
                    "median": statistics.median(times) if times else math.nan,
                    "max": max(times) if times else math.nan,
                },
            }
        return out

    def fields(self) -> dict[str, object]:
        """What `servo.uptime` publishes."""
        return {
            "uptime": self.uptime,
            "locked_s": self.locked_s,
            "elapsed_s": self.elapsed_s(),
            "faults": len(self.faults),
        }
