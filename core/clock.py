"""The injectable clock: monotonic seconds for deadlines and staleness, wall time for stamps.

Kept free of zmq (and of everything else of ours) so the servo and the simulator can share it.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What time-dependent code asks for: `now()` for intervals, `wall_ns()` for timestamps."""

    def now(self) -> float:
        """Monotonic time in seconds (only differences mean anything)."""
        ...

    def wall_ns(self) -> int:
        """UTC time in nanoseconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clock: `time.monotonic` and `time.time_ns`."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock that only moves when told to, so tests step through time without sleeping; the
    simulated World's virtual time (`ionpilot.sim.clock.VirtualClock` is this class)."""

    virtual = True  # the World consumes time on it (a real clock cannot be pushed)

    def __init__(self, start: float = 0.0, wall_start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._lock = threading.Lock()
        self._now = float(start)
        self._start = float(start)
        self._wall_start_ns = int(wall_start_ns)

    def now(self) -> float:
        with self._lock:
            return self._now

    def wall_ns(self) -> int:
        with self._lock:
            return self._wall_start_ns + round((self._now - self._start) * 1e9)

    def advance(self, seconds: float) -> None:
        """Move time forward; going backwards is refused (the clock is monotonic)."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        with self._lock:
            self._now += seconds

    def advance_to(self, t: float) -> None:
        """Move forward to `t`; an earlier `t` is ignored (the clock is monotonic)."""
        with self._lock:
            self._now = max(self._now, float(t))

    def set(self, now: float) -> None:
        """Jump to an absolute monotonic time not earlier than the current one."""
        with self._lock:
            if now < self._now:
                raise ValueError("a monotonic clock cannot go backwards")
            self._now = float(now)
