"""The world's clock seam: real time (optionally sped up) or virtual time that only moves when
the world consumes it, so days of operation run in seconds and every run is reproducible."""

from __future__ import annotations

import time

from ionpilot.core.clock import ManualClock

# one virtual clock in the project: the World's virtual time is the servo's manual clock, so the
# daemon's code on virtual time reads the very clock the World advances
VirtualClock = ManualClock


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
