"""One pass of the daemon's lock thread, apart from the thread: health and recovery, a clock-lock
step, the wavemeter locks when due, the state beat, and (without a recovery engine) the resume of
a lock a lab error paused. The daemon naps for what `cycle()` returns on real time; the harness
(ionpilot.harness) advances virtual time by it, so the month in seconds runs the same decisions."""

from __future__ import annotations

import math
from collections.abc import Callable

from ionpilot.core.clock import Clock
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.live_recovery import LiveRecovery

BUSY_POLL_S = 0.2  # the lock thread's longest nap while a recovery runs
RETRY_AFTER_LAB_ERROR_S = 2.0  # without a recovery engine: a paused lock is resumed after this


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
        self.operator_paused = False  # an operator's pause: no automatic resume
        self._retry_at: float | None = None

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
                    if not busy and not aux.lent:  # a lent laser is the borrower's
                        self.guarded(aux.start, f"aux lock {aux.name} cannot start")
                else:
                    aux.step()
        if now - self._last_beat >= 1.0:  # late subscribers learn the state within 1 s
            self.beat(self.lock.state.value)
            self._last_beat = now
        paused = self.lock.state in (LockState.HOLDOVER, LockState.UNLOCKED)
        if recovery is not None:
            if busy or paused:
                # the recovery engine decides about hold-over; a step's own pace (a current
                # sweep steps every 0.1 s), at most BUSY_POLL_S
                return min(BUSY_POLL_S, max(0.02, recovery.next_tick_s))
            return 0.0
        if not paused or self.operator_paused:
            self._retry_at = None
            return BUSY_POLL_S if paused else 0.0
        # no recovery engine: a lab error paused the lock; try again (resume re-verifies a
        # long hold-over)
        if self._retry_at is None:
            self._retry_at = now + RETRY_AFTER_LAB_ERROR_S
        if now < self._retry_at:
            return self._retry_at - now
        self._retry_at = None
        self.lock.resume()
        return 0.0
