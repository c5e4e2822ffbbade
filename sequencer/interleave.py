"""How the clock's interrogations and user jobs share one pulse controller.

The servo asks for interrogations back to back; user jobs would take the controller for as long
as they run. Neither may starve the other: the clock keeps at least `min_duty` of the
controller's time whenever user jobs wait (its minimum interrogation rate and its fluorescence
checks, which the servo's time constant and lab file set: `ionpilot.servo.interrogation.
clock_duty`), user jobs fill the rest, and with no user job waiting the clock has it all.

The account is a credit in seconds of controller time the clock is owed. Every second that
passes while user jobs wait earns the clock `min_duty`, whether the controller plays a user's
slice or idles for the servo (`wait`: the clock is owed time but has no job queued, the servo
computing its update between two interrogations); a clock job of `t` costs it `t`. So a user
slice of `t` adds `min_duty·t`, a clock job takes `(1 − min_duty)·t` (and, with no user job
waiting, never leaves the clock in debt: running alone owes nobody anything), an idle wait adds
`min_duty·t`. The servo's own gaps therefore come out of the users' share, not the clock's: over
any span of `T` with users waiting the clock plays at least `min_duty·T` less one credit swing.
The credit stays within ±`max_user_slice_s`, so neither kind waits for more than about one slice.
An owed clock gets `grace_s` to queue its next job before a user slice starts. Live, the servo's
gaps are its round trip between two runs (median 3-4 ms) and, once per lock cycle, the
recovery's sensor pass reading the lab over the bus (0.25-2 s): the controller idles through the
shorter ones (3-5 % of its time, bench/trap.py), and the clock keeps its share (0.34 against
0.35 over a minute). A grace of 0.1 s lets user jobs, which cannot be cut below a slice, fill
those gaps: the controller idled 3 %, but the clock, whose demand its own gaps limit, got 0.30.
A servo that stays away longer (paused, stopped) idles the controller no more than one grace,
and its credit cannot grow beyond one slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Choice = Literal["clock", "user", "wait", "idle"]
Ran = Literal["clock", "user", "wait"]


@dataclass
class ClockShare:
    """The policy: who runs next on the controller, and the account that decides it."""

    min_duty: float = 0.5  # the clock's share of the controller while user jobs wait
    max_user_slice_s: float = 2.0  # the longest controller call of a user job between looks
    grace_s: float = 1.0  # how long an owed clock may take to queue its next job (see above)
    credit_s: float = 0.0  # controller time the clock is owed (negative: the users are)

    def __post_init__(self) -> None:
        if not 0.0 < self.min_duty < 1.0:
            raise ValueError(f"min_duty must be in (0, 1), found {self.min_duty}")
        if not self.max_user_slice_s > 0 or not self.grace_s >= 0:
            raise ValueError("max_user_slice_s must be positive and grace_s not negative")

    def choose(
        self, clock_ready: bool, user_ready: bool, since_clock_s: float
    ) -> tuple[Choice, float]:
        """What runs next, and for `wait` how long to wait for the clock's next job at most.
        `since_clock_s`: seconds since the last clock job ended."""
        if clock_ready and (not user_ready or self.credit_s > 0):
            return "clock", 0.0
        if not user_ready:
            return "idle", 0.0
        if not clock_ready and self.credit_s > 0 and since_clock_s < self.grace_s:
            return "wait", self.grace_s - since_clock_s
        return "user", 0.0

    def ran(self, kind: Ran, seconds: float, users_waiting: bool) -> None:
        """Account `seconds` of controller time: a job of `kind` (`clock`, `user`), or the
        controller left idle after a `wait` choice (`wait`, users waiting)."""
        t = max(0.0, seconds)
        if kind == "clock":
            floor = -self.max_user_slice_s if users_waiting else min(self.credit_s, 0.0)
            self.credit_s = max(floor, self.credit_s - (1.0 - self.min_duty) * t)
        elif users_waiting:
            self.credit_s = min(self.max_user_slice_s, self.credit_s + self.min_duty * t)
