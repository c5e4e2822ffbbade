"""One pass of the daemon's lock thread, apart from the thread: health and recovery, a clock-lock
step, the wavemeter locks when due, the state beat. The daemon naps for what `cycle()` returns on
real time; a test advances virtual time by it, so both run the same decisions."""

from __future__ import annotations

import math
from collections.abc import Callable

from ionpilot.core.clock import Clock
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.live_recovery import LiveRecovery

BUSY_POLL_S = 0.2  # the lock thread's longest nap while a recovery runs


class LockCycle:
    """The lock thread's work, on the clock seam. `guarded(action, what)` runs a start-up that may
    fail on a lab error; `beat(state)` publishes the lock state (at least once a second)."""

    def __init__(
        self,
        lock: ClockLock,
        auxes: list[AuxLock],
        clock: Clock,
        recovery: LiveRecovery | None,
        *,
        guarded: Callable[[Callable[[], object], str], None],
        beat: Callable[[str], None],
    ) -> None:
        self.lock = lock
        self.auxes = auxes
        self.clock = clock
        self.recovery = recovery
        self.guarded = guarded
        self.beat = beat
        self._last_beat = -math.inf

    def start(self) -> None:
        self.lock.start()
        for aux in self.auxes:
            self.guarded(aux.start, f"aux lock {aux.name} cannot start")

    def cycle(self) -> float:
        """One pass; returns seconds to nap before the next (0: go on at once)."""
        recovery = self.recovery
        busy = recovery.tick() if recovery is not None else False
        if not busy:
            before = self.lock.state
            self.lock.step()
            paused = before is LockState.LOCKED and self.lock.state is LockState.HOLDOVER
            if recovery is not None and paused:
                # the step paused the lock (no fluorescence, a lab error): the recovery engine
                # looks at once, before the wavemeter locks' reads
                return 0.0
        now = self.clock.now()
        for aux in self.auxes:  # between clock updates, when due
            if now >= aux.next_due:
                if aux.state == "stopped":
                    # one that could not start is tried again; one a recovery stopped (a
                    # mode search, the safe state) stays stopped until the recovery is over
                    aux.next_due = now + aux.settings.update_period
                    if not busy:
                        self.guarded(aux.start, f"aux lock {aux.name} cannot start")
                else:
                    aux.step()
        if now - self._last_beat >= 1.0:  # late subscribers learn the state within 1 s
            self.beat(self.lock.state.value)
            self._last_beat = now
        if recovery is not None and (busy or self.lock.state.value in ("holdover", "unlocked")):
            # the recovery engine decides about hold-over; a step's own pace (a current sweep
            # steps every 0.1 s), at most BUSY_POLL_S
            return min(BUSY_POLL_S, max(0.02, recovery.next_tick_s))
        return 0.0
