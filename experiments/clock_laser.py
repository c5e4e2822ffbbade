"""A laser taken from its lock for an experiment, and given back.

While an experiment probes the clock transition itself (a Rabi flop, a line scan, Ramsey
fringes) the clock lock must not interrogate: it holds over, steering the AOM on its drift
estimate, and resumes when the laser comes back. An experiment that tunes the cooling laser
needs its wavemeter lock to let go of the piezo. The daemon lends a laser for a bounded lease (a
script that dies cannot keep it) and refuses during a recovery; `clock_laser(lab, owner)` and
`borrowed_laser(lab, laser, owner)` are the context managers that borrow, wait until the lock
has let go, and always give the laser back.

While the clock lock holds over, user jobs are held (the laser is not on the ion's line for
them); the borrower of the clock laser or the trap plays its schedules as clock jobs with the
loan's `lease` token, which the daemon gave it and told the sequencer: nobody else may.
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

__all__ = ["ClockLaserLoan", "ClockLaserRefused", "borrowed_laser", "clock_laser"]


class ClockLaserRefused(RuntimeError):
    """The daemon would not lend the laser (a recovery running, the lock not locked, or
    someone else holding it), with its reason."""


@dataclass
class ClockLaserLoan:
    """A laser while lent; for the clock laser, where the lock's hold-over puts the line (AOM
    Hz) now, and the light at the ion as the comb last measured it."""

    lab: Lab
    owner: str
    daemon: str = "daemon"
    laser: str = "clock"
    lease_ends_s: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)
    # the secret the daemon lent the clock laser or the trap with: the borrower's clock-kind
    # schedules carry it (`SequencerJobs.run_schedule(..., lease=loan.lease)`); None otherwise
    lease: str | None = None

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


def _let_go(laser: str, status: dict[str, Any]) -> bool:
    """Whether the laser's lock has let go: the clock lock holding over, an aux lock stopped."""
    if laser in ("clock", "trap"):  # the trap lent: the lock holds over too
        return status.get("state") == "holdover"
    auxes = status.get("aux_locks")
    return isinstance(auxes, dict) and auxes.get(laser) == "stopped"


@contextmanager
def borrowed_laser(
    lab: Lab,
    laser: str,
    owner: str,
    *,
    lease_s: float = 600.0,
    wait_s: float = 90.0,
    daemon: str = "daemon",
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[ClockLaserLoan]:
    """Borrow `laser` (`clock`, or an aux lock's name) for at most `lease_s`; its lock lets go
    meanwhile and takes it back when the block ends (also on an error). Waits up to `wait_s`
    for a lock still acquiring; raises ClockLaserRefused at once during a recovery or when
    someone else holds the laser."""
    clock = clock or SystemClock()
    deadline = clock.now() + wait_s
    args = {"name": "lend_laser", "laser": laser, "owner": owner, "lease_s": float(lease_s)}
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
    loan = ClockLaserLoan(lab, owner, daemon, laser)
    if isinstance(reply, dict) and isinstance(reply.get("lease_ends_s"), int | float):
        loan.lease_ends_s = float(reply["lease_ends_s"])
    if isinstance(reply, dict) and isinstance(reply.get("lease"), str):
        loan.lease = reply["lease"]
    try:
        # the lock thread takes the request between its steps: wait until it has let go
        while True:
            status = loan.refresh()
            lent = status.get("lent")
            holder = lent.get(laser) if isinstance(lent, dict) else None
            if not isinstance(holder, dict) or holder.get("owner") != owner:
                raise ClockLaserRefused(f"{daemon}: the {laser} laser went back before use")
            if _let_go(laser, status):
                break
            if clock.now() > deadline:
                raise ClockLaserRefused(
                    f"{daemon}: the {laser} lock did not let go within {wait_s:g} s"
                )
            sleep(0.1)
        yield loan
    finally:
        back = {"name": "return_laser", "laser": laser, "owner": owner}
        try:
            lab.call(daemon, "call", back, timeout=10.0)
        except BusError:
            pass  # the lease ends by itself; the daemon takes the laser back then


@contextmanager
def clock_laser(
    lab: Lab,
    owner: str,
    *,
    lease_s: float = 600.0,
    wait_s: float = 90.0,
    daemon: str = "daemon",
) -> Iterator[ClockLaserLoan]:
    """Borrow the clock laser from the clock lock (which holds over meanwhile)."""
    with borrowed_laser(lab, "clock", owner, lease_s=lease_s, wait_s=wait_s, daemon=daemon) as loan:
        yield loan
