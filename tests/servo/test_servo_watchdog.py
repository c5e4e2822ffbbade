"""Hold-over is told while the lock thread is stuck (issue 19): the lock thread blocked in an
interrogation (a dead driver host's bus call) cannot publish; the watchdog, from outside it,
publishes `holdover` on `servo.clock.state` once no correction came within the deadline, keeps
saying it, and says `locked` again after the next correction. Virtual time: the World's clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ionpilot.commands.clock_sim import sim_world_settings
from ionpilot.harness.lab import WorldLab, world_clock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.settings import ClockLockSettings
from ionpilot.servo.watchdog import LockStateWatchdog
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import World


class StuckLab(WorldLab):
    """The World's lab whose interrogation can be made to hang (a driver host frozen)."""

    def __init__(self, world: World) -> None:
        super().__init__(world, seed=3)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def interrogate(self, *args: Any, **kwargs: Any) -> int:
        self.entered.set()
        if not self.gate.wait(30.0):
            raise AssertionError("the stuck interrogation was never released")
        return super().interrogate(*args, **kwargs)


def locked_lock() -> tuple[World, StuckLab, ClockLock]:
    world = World(sim_world_settings(SimSettings(), "ideal", 3, 0.3))
    lab = StuckLab(world)
    lock = ClockLock(ClockLockSettings(), lab, world_clock(world), None, None)
    lock.start()
    for _ in range(200):
        if lock.state is LockState.LOCKED:
            break
        lock.step()
    assert lock.state is LockState.LOCKED
    lock.step()
    return world, lab, lock


def test_holdover_is_published_while_the_lock_thread_is_stuck() -> None:
    world, lab, lock = locked_lock()
    published: list[str] = []
    watchdog = LockStateWatchdog(
        lambda: lock.reported_state().value, published.append, world_clock(world)
    )
    watchdog.beat(lock.state.value)  # the lock thread's last beat before it hangs
    assert published == ["locked"]
    world.advance(0.5)
    assert watchdog.check() is None  # said 0.5 s ago, unchanged: nothing to add

    lab.gate.clear()
    stuck = threading.Thread(target=lock.step, daemon=True)
    stuck.start()
    assert lab.entered.wait(10.0)  # the lock thread is inside the interrogation, blocked
    deadline = lock.correction_deadline_s
    world.advance(deadline * 0.9 - 0.5)
    assert watchdog.check() == "locked"  # silent for a second: republished as it stands
    world.advance(deadline * 0.2)
    assert lock.state is LockState.LOCKED  # the stuck thread has not noticed anything
    assert watchdog.check() == "holdover"
    assert published[-1] == "holdover"
    world.advance(0.5)
    assert watchdog.check() is None
    world.advance(0.6)
    assert watchdog.check() == "holdover"  # again, for subscribers that came late
    assert stuck.is_alive()

    lab.gate.set()  # the host answers again: the step finishes with a correction
    stuck.join(10.0)
    assert not stuck.is_alive()
    assert lock.reported_state() is LockState.LOCKED
    assert watchdog.check() == "locked"
    assert published == ["locked", "locked", "holdover", "holdover", "locked"]
    assert watchdog.published_by_watchdog == 4


def test_the_lock_threads_beat_says_what_the_watchdog_would() -> None:
    """A beat from a lock thread that is late (not stuck) tells the reported state, so the two
    publishers never contradict each other."""
    world, _, lock = locked_lock()
    published: list[str] = []
    watchdog = LockStateWatchdog(
        lambda: lock.reported_state().value, published.append, world_clock(world)
    )
    world.advance(lock.correction_deadline_s * 1.1)
    watchdog.beat(lock.state.value)
    assert published == ["holdover"]
    assert watchdog.check() is None


def test_the_watchdog_thread_publishes_on_its_own() -> None:
    world, _, lock = locked_lock()
    told = threading.Event()
    published: list[str] = []

    def publish(state: str) -> None:
        published.append(state)
        if state == "holdover":
            told.set()

    watchdog = LockStateWatchdog(
        lambda: lock.reported_state().value, publish, world_clock(world), period_s=0.01
    )
    world.advance(lock.correction_deadline_s * 1.1)  # no correction since
    watchdog.start()
    try:
        assert told.wait(5.0)
    finally:
        watchdog.stop()
    assert published[0] == "holdover"


def test_bad_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        LockStateWatchdog(
            lambda: "locked",
            print,
            world_clock(World(sim_world_settings(SimSettings(), "ideal", 3, 0.3))),
            period_s=0.0,
        )
