"""One `ionpilot up` lab for every test that only watches a healthy lab or injects a fault the
lab recovers from by itself: a live lab costs ~40-50 s to start and lock, so one serves them all
instead of one each (the `shared_up` fixture of tests/conftest.py; tests that kill processes,
need their own lab file or read `up`'s summary keep their own `UpRun`).

tests/conftest.py runs the users one after another and stops the lab after the last of them,
so it does not idle through the rest of the suite. Before each test, `SharedUp.handover` checks
that the lab is healthy (`up` and every process it started running, the clock locked with both
laser locks, no recovery under way, no safe state, no alarm) and acknowledges the alarms the
tests before it latched, so every test starts from the same place. A lab that is not healthy
within `HEALTHY_WITHIN_S` (a test broke it) is stopped and started anew with a warning saying
why: one broken test does not make the next ones fail mysteriously."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from labprocs import (
    UpRun,
    alive,
    command_client,
    daemon_status,
    lab_on_free_ports,
    locked_and_idle,
)

from ionpilot.bus.client import CommandClient
from ionpilot.commands.up import child_specs
from ionpilot.config import LabConfig, load_config

# The ion reloads in seconds instead of a minute (a small oven that heats in 2 s, a 2 s mean
# loading time): the recoveries the users wait for are short. Nothing else differs from
# configs/sim-lab.yaml (its five-ion chain: the MS-gate experiment takes a pair of it, the clock
# experiments probe and read ion 0, the reload counts the whole chain back).
FAST_LOADING = "sim: {ion: {reload_time: 2 s}, oven: {time_constant: 2 s}}"
DURATION_S = 1500.0  # `up` ends by itself at worst (the users take a few minutes in all)
FIRST_LOCK_WITHIN_S = 150.0  # a fresh lab: processes started, clock and laser locks locked
HEALTHY_WITHIN_S = 150.0  # the longest recovery a user may leave behind (a reload, a relock)
STEP_S = 0.25  # how often the daemon is asked
SAFE_STATE = "the daemon holds the lab in its safe state (only an operator leaves it)"


@dataclass
class LiveUp:
    """The shared lab as one test gets it: healthy, its latched alarms acknowledged."""

    lab_file: Path  # the lab file `up` runs (free loopback ports, data in `data_dir`)
    config: LabConfig
    up: UpRun
    data_dir: Path
    audit_mark: int  # the audit log's last row id at handover: the test's rows come after it

    @property
    def audit_file(self) -> Path:
        return self.data_dir / "servo" / "audit.sqlite"

    def audit_rows(self) -> list[tuple[str, str, str]]:
        """(kind, action, reason) of the daemon's audit rows written since the handover, in
        order: what this test's faults caused, not the earlier tests'."""
        return audit_rows_after(self.audit_file, self.audit_mark)


def audit_rows_after(audit: Path, mark: int) -> list[tuple[str, str, str]]:
    if not audit.exists():
        return []
    db = sqlite3.connect(audit)
    try:
        query = "SELECT kind, action, reason FROM audit WHERE id > ? ORDER BY id"
        return [(str(k), str(a), str(r)) for k, a, r in db.execute(query, (mark,))]
    finally:
        db.close()


def last_audit_id(audit: Path) -> int:
    if not audit.exists():
        return 0
    db = sqlite3.connect(audit)
    try:
        (mark,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM audit").fetchone()
        return int(mark)
    finally:
        db.close()


class SharedUp:
    """The shared lab: started on the first handover, checked (and if need be restarted) on
    every one, stopped by `close` (which fails if `up` left a process behind)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.lab_file = lab_on_free_ports(tmp, "shared", [FAST_LOADING])
        self.config = load_config(self.lab_file)
        self.up: UpRun | None = None
        self.daemon: CommandClient | None = None
        self.starts = 0
        self.left: list[str] = []  # processes an earlier `up` of this lab left behind
        self.released = False  # `up` told to stop after the last user, not waited for yet

    def _start(self) -> tuple[UpRun, CommandClient]:
        self.up = UpRun(self.lab_file, DURATION_S, self.tmp, "--quiet")
        self.daemon = command_client(self.config, "daemon")
        self.starts += 1
        return self.up, self.daemon

    def start(self) -> None:
        """Start `up` now if it is not running (it does not wait: the lock takes ~40 s of the
        simulated lab's real time, mostly idle, which the tests before the first user use)."""
        if self.up is None:
            self._start()

    def _stop(self) -> None:
        if self.daemon is not None:
            self.daemon.close()
            self.daemon = None
        if self.up is not None:
            up, self.up = self.up, None
            if self.released:  # SIGTERM sent: a second one would end `up` before its children
                with contextlib.suppress(subprocess.TimeoutExpired):
                    up.wait(60.0)
            up.__exit__(None, None, None)  # SIGTERM, then SIGKILL if it does not end
            if up.proc.stdout is not None:
                up.proc.stdout.close()
            self.left += up.left_behind()

    def problem(self) -> str | None:
        """Why the lab is not healthy now; None when it is."""
        if self.up is None or self.daemon is None:
            return "not started"
        code = self.up.proc.poll()
        if code is not None:
            return f"ionpilot up ended with {code}"
        expected = {spec.name for spec in child_specs(str(self.lab_file), self.config)}
        missing = sorted(expected - set(self.up.pids))
        if missing:
            return f"not started yet: {', '.join(missing)}"
        dead = sorted(name for name, pids in self.up.pids.items() if not alive(pids[-1]))
        if dead:
            return f"not running: {', '.join(dead)}"
        status = daemon_status(self.daemon)
        if not status:
            return "the daemon does not answer"
        if status.get("safe_state"):
            return SAFE_STATE
        if not locked_and_idle(status) or status.get("alarm"):
            keys = ("state", "aux_locks", "recovering", "safe_state", "alarm", "health")
            return "daemon: " + ", ".join(f"{k}={status.get(k)!r}" for k in keys)
        return None

    def _healthy_within(self, seconds: float) -> str | None:
        """Wait (polling, bounded) for a healthy lab; the last problem seen, None if healthy."""
        deadline = time.monotonic() + seconds
        problem = self.problem()
        while problem is not None and time.monotonic() < deadline:
            ended = self.up is not None and self.up.proc.poll() is not None
            if ended or problem == SAFE_STATE:
                return problem  # no waiting brings it back
            time.sleep(STEP_S)
            problem = self.problem()
        return problem

    def _acknowledge_latched(self) -> str | None:
        """Acknowledge every latched alarm (as the test fixture); None once none is left."""
        assert self.daemon is not None
        status = daemon_status(self.daemon)
        if not status.get("unacknowledged"):
            return None
        self.daemon.call("daemon", "call", {"name": "acknowledge"}, timeout=5.0)
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            status = daemon_status(self.daemon)
            if status and not status.get("unacknowledged"):
                return None
            time.sleep(STEP_S)
        return f"latched alarms still unacknowledged: {status.get('unacknowledged')!r}"

    def handover(self, test: str) -> LiveUp:
        """The lab, healthy, for `test`; restarted first (with a warning saying why) when it is
        not healthy within HEALTHY_WITHIN_S."""
        if self.released:  # a user after the last one (a test re-run): a lab anew
            self._stop()
            self.released = False
        if self.up is None:
            self._start()
            problem = self._healthy_within(FIRST_LOCK_WITHIN_S)
        else:
            problem = self._healthy_within(HEALTHY_WITHIN_S)
            problem = problem or self._acknowledge_latched()
            if problem is not None:
                assert self.up is not None
                tail = self.up.tail(30)
                warnings.warn(
                    f"the shared live lab was not healthy before {test} ({problem}); "
                    f"restarting it. The last lines of `up`:\n{tail}",
                    pytest.PytestWarning,
                    stacklevel=2,
                )
                self._stop()
                self._start()
                problem = self._healthy_within(FIRST_LOCK_WITHIN_S)
        problem = problem or self._acknowledge_latched()
        up = self.up
        assert up is not None
        assert problem is None, f"the shared live lab is not healthy: {problem}\n{up.tail()}"
        data_dir = Path(self.config.lab.data_dir)
        mark = last_audit_id(data_dir / "servo" / "audit.sqlite")
        return LiveUp(self.lab_file, self.config, up, data_dir, mark)

    def release(self) -> None:
        """After the last user: SIGTERM `up` and do not wait (its processes take ~9 s to stop,
        which the tests after it use); `close` waits for it and checks what it left."""
        if self.daemon is not None:
            self.daemon.close()
            self.daemon = None
        if self.up is not None and self.up.proc.poll() is None:
            self.up.proc.terminate()
        self.released = True

    def close(self) -> None:
        """Stop the lab (wait for it); AssertionError if any `up` of it left a process
        running."""
        self._stop()
        self.released = False
        left, self.left = self.left, []
        assert left == [], f"the shared live lab left processes behind: {left}"


def uses(fixture: str) -> Callable[[Any], bool]:
    """A predicate on pytest items: does the test use `fixture` (directly or through others)?"""
    return lambda item: fixture in getattr(item, "fixturenames", ())
