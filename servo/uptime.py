"""Uptime accounting: time locked over time elapsed, and time to recover per fault.

Fed by the loop that runs the lock (`observe(t, locked)` after each step) and by the recovery
engine (`fault_*`). Time to recover runs from the trip to the moment the clock is locked again
(or, if the lock was not locked when the fault tripped, to the end of the playbook).

Bounded for weeks of running: `faults` keeps the newest `max_records` records (plus any still in
progress); older ones are folded into per-kind totals, so counts stay exact and the median time
to recover is taken over the newest `max_records` recoveries of each kind.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field


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


@dataclass
class _KindTotals:
    """Faults of one kind that have left the record list."""

    count: int = 0
    recovered: int = 0
    escalated: int = 0
    max_s: float = -math.inf
    times: deque[float] = field(default_factory=deque)


class UptimeAccount:
    """Locked time, elapsed time, and the fault records (the newest `max_records`)."""

    def __init__(self, start_s: float, max_records: int = 10_000) -> None:
        self.start_s = start_s
        self.locked_s = 0.0
        self._last_t = start_s
        self._locked = False
        self.faults: list[FaultRecord] = []
        self.max_records = max(1, max_records)
        self.fault_count = 0  # every fault ever tripped, including those folded away
        self._folded: dict[str, _KindTotals] = {}

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
        self.fault_count += 1
        if len(self.faults) > self.max_records + max(1, self.max_records // 10):
            self._fold()
        return record

    def _fold(self) -> None:
        """Keep the newest `max_records` records and any older one still in progress (the
        recovery engine may yet finish it); fold the rest into the per-kind totals."""
        old, new = self.faults[: -self.max_records], self.faults[-self.max_records :]
        kept: list[FaultRecord] = []
        for record in old:
            if record.recovered_s is None and not record.escalated:
                kept.append(record)
                continue
            totals = self._folded.setdefault(
                record.kind, _KindTotals(times=deque(maxlen=self.max_records))
            )
            totals.count += 1
            totals.escalated += record.escalated
            ttr = record.time_to_recover_s
            if ttr is not None:
                totals.recovered += 1
                totals.times.append(ttr)
                totals.max_s = max(totals.max_s, ttr)
        self.faults = kept + new

    def summary(self) -> dict[str, dict[str, object]]:
        """Per kind: count, recovered, escalated, mttr_s {median, max}."""
        out: dict[str, dict[str, object]] = {}
        for kind in sorted({f.kind for f in self.faults} | set(self._folded)):
            records = [f for f in self.faults if f.kind == kind]
            folded = self._folded.get(kind, _KindTotals())
            times = [t for f in records if (t := f.time_to_recover_s) is not None]
            recent = [*folded.times, *times][-self.max_records :]
            worst = max([folded.max_s, *times])
            out[kind] = {
                "count": folded.count + len(records),
                "recovered": folded.recovered
                + sum(1 for f in records if f.recovered_s is not None),
                "escalated": folded.escalated + sum(1 for f in records if f.escalated),
                "mttr_s": {
                    "median": statistics.median(recent) if recent else math.nan,
                    "max": worst if math.isfinite(worst) else math.nan,
                },
            }
        return out

    def fields(self) -> dict[str, object]:
        """What `servo.uptime` publishes."""
        return {
            "uptime": self.uptime,
            "locked_s": self.locked_s,
            "elapsed_s": self.elapsed_s(),
            "faults": self.fault_count,
        }
