"""The world's clock seam: real time (optionally sped up) or virtual time that only moves when
the world consumes it, so days of operation run in seconds and every run is reproducible."""

from __future__ import annotations

import threading
import time


class VirtualClock:
    """World seconds that advance only when told to (`advance`), never by themselves."""

    virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = float(start)

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance_to(self, t: float) -> None:
        """Move forward to `t`; earlier times are ignored (the clock is monotonic)."""
        with self._lock:
            self._now = max(self._now, t)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        with self._lock:
            self._now += seconds


class RealClock:
    """Wall-clock seconds since creation, times `speed` (world seconds per real second)."""

    virtual = False

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, found {speed}")
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def advance_to(self, t: float) -> None:
        """Real time cannot be pushed: a caller that is ahead waits (see `seconds_until`)."""

    def seconds_until(self, t: float) -> float:
        """Real seconds until world time `t` is reached (0 if already past)."""
        return max(0.0, (t - self.now()) / self.speed)


WorldClock = VirtualClock | RealClock
