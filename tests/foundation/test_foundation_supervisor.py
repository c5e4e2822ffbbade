"""Supervision: capped back-off on virtual time; real children restarted after exit, kill -9 and
silence; nothing left behind on stop."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from ionpilot.core.clock import ManualClock
from ionpilot.supervisor import ChildSpec, RestartPolicy, Supervisor


def state_after_tick(sup: Supervisor, name: str) -> str:
    sup.tick()
    return sup.children[name].state


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_backoff_grows_caps_and_resets_only_after_a_stable_run() -> None:
    clock = ManualClock()
    policy = RestartPolicy(clock, initial_s=1.0, maximum_s=8.0, stable_after_s=60.0)
    delays = []
    for _ in range(6):  # a crash loop: dies right after each start
        policy.started()
        clock.advance(0.1)
        delays.append(policy.died())
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert not policy.due()
    clock.advance(8.0)
    assert policy.due()
    policy.started()
    clock.advance(61.0)  # stayed up: the next death starts from the beginning again
    assert policy.died() == 1.0


def sleeper(name: str) -> ChildSpec:
    code = "import time; print('ready', flush=True); time.sleep(120)"
    return ChildSpec(name, (sys.executable, "-c", code), heartbeat=name, startup_grace_s=0.0)


def test_killed_child_is_restarted_and_stop_leaves_nothing() -> None:
    sup = Supervisor([sleeper("a"), sleeper("b")], backoff_initial_s=0.05, backoff_max_s=0.2)
    try:
        sup.start_all(ready_timeout_s=20)
        first = sup.children["a"].pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: state_after_tick(sup, "a") == "backoff")
        assert wait_for(lambda: state_after_tick(sup, "a") == "running")
        assert sup.children["a"].pid not in (None, first)
        assert sup.children["a"].policy.restarts == 1
        assert sup.children["a"].exit_codes == [-signal.SIGKILL]
        assert sup.children["b"].policy.restarts == 0  # the others carry on
    finally:
        pids = [c.pid for c in sup.children.values() if c.pid]
        sup.stop_all()
    for pid in pids:
        assert not _alive(pid)


def test_silent_child_is_killed_and_restarted() -> None:
    ages = {"a": 0.0}
    sup = Supervisor(
        [sleeper("a")],
        heartbeat_age=lambda src: ages[src],
        stale_after_s=3.0,
        backoff_initial_s=0.05,
    )
    try:
        sup.start_all(ready_timeout_s=20)
        first = sup.children["a"].pid
        sup.tick()
        assert sup.children["a"].state == "running"
        ages["a"] = 10.0  # alive as a process, but its heartbeat stopped
        sup.tick()
        assert sup.children["a"].heartbeat_deaths == 1
        ages["a"] = 0.0
        assert wait_for(lambda: state_after_tick(sup, "a") == "running")
        assert sup.children["a"].pid != first
        assert first is not None and not _alive(first)
    finally:
        sup.stop_all()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_second_stop_signal_kills_children_that_ignore_sigterm() -> None:
    """`ionpilot up`'s second Ctrl-C or SIGTERM while stopping: every child's group gets SIGKILL
    at once, instead of waiting out each grace period (or leaving them, as a default handler
    that killed `up` itself did)."""
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(120)"
    )
    stubborn = [ChildSpec(n, (sys.executable, "-c", code)) for n in ("a", "b")]
    sup = Supervisor(stubborn)
    sup.start_all(ready_timeout_s=20)
    pids = [c.pid for c in sup.children.values() if c.pid]
    assert len(pids) == 2
    stopping = threading.Thread(target=sup.stop_all)
    started = time.monotonic()
    stopping.start()
    assert wait_for(lambda: sup._stopping)  # stop_all is waiting out the first grace period
    sup.kill_all_now()  # what the second signal's handler calls
    stopping.join(20)
    assert not stopping.is_alive()
    assert time.monotonic() - started < 5.0  # not 2 x 5 s of grace
    for pid in pids:
        assert not _alive(pid)
