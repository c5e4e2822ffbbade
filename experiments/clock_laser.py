"""The clock laser taken from the clock lock for an experiment, and given back.

While an experiment probes the clock transition itself (a Rabi flop, a line scan, Ramsey
fringes) the lock must not interrogate: it holds over, steering the AOM on its drift estimate,
and resumes when the laser comes back. The daemon lends the laser for a bounded lease (a script
that dies cannot keep it) and refuses during a recovery; `clock_laser(lab, owner)` is the
context manager that borrows, waits until the lock is holding over, and always gives it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ionpilot.bus.codec import BusError, ErrorCode
from ionpilot.core.clock import Clock, SystemClock

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = ["ClockLaserLoan", "ClockLaserRefused", "clock_laser"]


class ClockLaserRefused(RuntimeError):
    """The daemon would not lend the clock laser (a recovery running, the lock not locked, or
    someone else holding it), with its reason."""


@dataclass
class ClockLaserLoan:
    """The clock laser while lent: where the lock's hold-over puts the line (AOM Hz) now, and
    the light at the ion as the comb last measured it."""

    lab: Lab
    owner: str
    daemon: str = "daemon"
    lease_ends_s: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)

    def refresh(self) -> dict[str, Any]:
        reply = self.lab.call(self.daemon, "status", timeout=5.0)
        self.status = reply if isinstance(reply, dict) else {}
        return self.status

    def line_aom_hz(self) -> float:
        """The AOM frequency the lock's hold-over steers to now: its estimate of the line."""
        value = self.refresh().get("aom_frequency_hz")
        if not isinstance(value, int | float):
            raise ClockLaserRefused("the daemon reports no clock AOM frequency")
        return float(value)

    def optical_frequency_hz(self) -> float | None:
        """Laser + steer as the comb last measured it (None before the first comb reading)."""
        value = self.status.get("optical_frequency_hz")
        return float(value) if isinstance(value, int | float) else None


@contextmanager
def clock_laser(
    lab: Lab,
    owner: str,
    *,
    lease_s: float = 600.0,
    wait_s: float = 90.0,
    daemon: str = "daemon",
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[ClockLaserLoan]:
    """Borrow the clock laser for at most `lease_s`; the lock holds over meanwhile and resumes
    when the block ends (also on an error). Waits up to `wait_s` for a lock still acquiring;
    raises ClockLaserRefused at once during a recovery or when someone else holds the laser."""
    clock = clock or SystemClock()
    deadline = clock.now() + wait_s
    args = {"name": "lend_clock_laser", "owner": owner, "lease_s": float(lease_s)}
    while True:
        try:
            reply = lab.call(daemon, "call", args, timeout=10.0)
            break
        except BusError as exc:
            waiting = exc.code == ErrorCode.BUSY and "until it is locked" in exc.message
            if not waiting or clock.now() > deadline:
                hint = " (is the lab up? `ionpilot up`)" if exc.code == ErrorCode.TIMEOUT else ""
                raise ClockLaserRefused(f"{daemon}: {exc.message}{hint}") from None
        sleep(0.5)
    loan = ClockLaserLoan(lab, owner, daemon)
    if isinstance(reply, dict) and isinstance(reply.get("lease_ends_s"), int | float):
        loan.lease_ends_s = float(reply["lease_ends_s"])
    try:
        # the lock thread takes the pause between its steps: wait until it is holding over
        while True:
            status = loan.refresh()
            if status.get("clock_laser_lent_to") != owner:
                raise ClockLaserRefused(f"{daemon}: the clock laser went back before use")
            if status.get("state") == "holdover":
                break
            if clock.now() > deadline:
                raise ClockLaserRefused(
                    f"{daemon}: the lock did not hold over within {wait_s:g} s "
                    f"(state {status.get('state')})"
                )
            sleep(0.1)
        yield loan
    finally:
        try:
            lab.call(daemon, "call", {"name": "return_clock_laser", "owner": owner}, timeout=10.0)
        except BusError:
            pass  # the lease ends by itself; the daemon takes the laser back then
