"""The lock state told from outside the lock thread: a watchdog that republishes it.

The lock thread publishes `servo.clock.state` after its steps. When that thread is stuck (an
interrogation waiting on a dead driver host's bus call), nobody would tell subscribers that a
lock without corrections is no longer locked: `ClockLock.reported_state()` says `holdover` once
no correction came within its deadline, but only `status` asked it. This watchdog asks it from
its own thread every `period_s` and publishes it when it differs from what was last published,
and again every `republish_s` while the lock thread is silent, so a late subscriber learns it.
Decisions run on the injectable clock (`check()`); the thread only paces the checks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from ionpilot.core.clock import Clock

CHECK_PERIOD_S = 0.25  # how often the watchdog asks (a stuck lock is told within this)
REPUBLISH_S = 1.0  # the lock thread's beat: the state goes out at least this often


class LockStateWatchdog:
    """Publishes `reported_state()` through `publish` when the lock thread does not.

    `beat(state)` is the lock thread's own state beat (it goes out as the reported state, so the
    two never contradict each other); `check()` is one look from outside."""

    def __init__(
        self,
        reported_state: Callable[[], str],
        publish: Callable[[str], None],
        clock: Clock,
        *,
        period_s: float = CHECK_PERIOD_S,
        republish_s: float = REPUBLISH_S,
    ) -> None:
        if not period_s > 0 or not republish_s > 0:
            raise ValueError("the watchdog's period_s and republish_s must be positive")
        self._reported = reported_state
        self._publish = publish
        self._clock = clock
        self.period_s = period_s
        self.republish_s = republish_s
        self._lock = threading.Lock()
        self._last_state = ""
        self._last_at = -math.inf
        self.published_by_watchdog = 0  # states the lock thread did not send itself
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def last_published(self) -> str:
        return self._last_state

    def beat(self, state: str) -> None:
        """The lock thread's beat: publish what anyone may be told (`state` unless a lock
        without corrections has become hold-over meanwhile)."""
        told = self._reported() or state
        with self._lock:
            self._last_state, self._last_at = told, self._clock.now()
            self._publish(told)

    def check(self) -> str | None:
        """One look: publish the reported state if it changed or went unsaid for `republish_s`
        (the lock thread silent); returns what was published, None if nothing."""
        state = self._reported()
        with self._lock:
            now = self._clock.now()
            if state == self._last_state and now - self._last_at < self.republish_s:
                return None
            self._last_state, self._last_at = state, now
            self.published_by_watchdog += 1
            self._publish(state)
        return state

    def start(self) -> LockStateWatchdog:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lock-state-watchdog", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
