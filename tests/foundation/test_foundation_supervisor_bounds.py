"""A chatty or odd child never blocks on its output pipe, and the supervisor's bookkeeping per
child stays bounded over weeks of restarts; `ionpilot up`'s lock history too."""

from __future__ import annotations

import os
import select
import signal
import sys
import textwrap
from pathlib import Path

from ionpilot.commands.up import KEEP_STATES, LockTracker
from ionpilot.core.clock import ManualClock
from ionpilot.supervisor import KEEP_EXIT_CODES, MAX_LINE_BYTES, ChildSpec, Supervisor


def python_child(name: str, code: str, **spec: object) -> ChildSpec:
    return ChildSpec(name, (sys.executable, "-c", textwrap.dedent(code)), **spec)  # type: ignore[arg-type]


def test_child_output_is_drained_whatever_it_writes() -> None:
    # 4 MiB without a newline, bytes that are not UTF-8, a callback that raises: the child
    # must still get all of it out (a 64 KiB pipe left undrained would block it forever)
    code = """
        import sys
        out = sys.stdout.buffer
        out.write(b"\\xff\\xfe not utf-8 \\xc3\\n")
        out.write(b"x" * (4 << 20))
        out.write(b"\\n")
        for i in range(20000):
            out.write(b"line %d\\n" % i)
        out.write(b"ready after all that\\n")
        out.flush()
        import time
        time.sleep(60)  # until stop_all
    """
    calls = []

    def on_line(name: str, line: str) -> None:
        calls.append(line)
        if len(calls) % 1000 == 0:
            raise RuntimeError("a buggy display")

    sup = Supervisor([python_child("chatty", code)], on_line=on_line)
    try:
        sup.start_all(ready_timeout_s=60)  # the ready line arrives only if all was drained
        child = sup.children["chatty"]
        assert child.state == "running"
        assert calls[0] == "\ufffd\ufffd not utf-8 \ufffd"
        assert max(len(line) for line in calls) <= MAX_LINE_BYTES
        assert child.lines == len(calls) >= 20_000 + (4 << 20) // MAX_LINE_BYTES
        assert len(child.last_lines) == 50
    finally:
        sup.stop_all()


def test_exit_codes_are_bounded_in_a_crash_loop() -> None:
    clock = ManualClock()
    crash = ChildSpec("crash", ("/bin/sh", "-c", "exit 3"), wait_ready=False)
    sup = Supervisor([crash], clock=clock, backoff_initial_s=1.0, backoff_max_s=1.0)
    child = sup.start("crash")
    deaths = 0
    try:
        while deaths < KEEP_EXIT_CODES + 20:
            assert child.process is not None
            child.process.wait(30)
            sup.tick()  # notices the exit
            deaths += 1
            clock.advance(1.0)
            sup.tick()  # restarts it
    finally:
        sup.stop_all()
    assert child.deaths == deaths
    assert child.exit_codes == [3] * KEEP_EXIT_CODES
    assert child.policy.restarts == deaths


def test_what_an_exited_child_started_does_not_outlive_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = f"""
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(p.pid))
        print("ready", flush=True)
        sys.stdin.read()
    """  # exits at once (stdin is /dev/null), leaving its child holding the output pipe
    clock = ManualClock()
    sup = Supervisor(
        [python_child("parent", code)], clock=clock, backoff_initial_s=100.0, backoff_max_s=100.0
    )
    try:
        sup.start_all(ready_timeout_s=60)
        child = sup.children["parent"]
        assert child.process is not None
        child.process.wait(30)
        grandchild = int(pid_file.read_text())
        exited = os.pidfd_open(grandchild)  # readable once it has exited (no polling)
        try:
            sup.tick()
            assert child.state == "backoff"
            gone, _, _ = select.select([exited], [], [], 30.0)
            if not gone:
                os.kill(grandchild, signal.SIGKILL)
            assert gone, "the exited child's own child survived it"
        finally:
            os.close(exited)
    finally:
        sup.stop_all()


def test_lock_history_of_up_is_bounded() -> None:
    tracker = LockTracker(started=0.0)
    for i in range(3 * KEEP_STATES):
        tracker.on_state(float(i), "locked" if i % 2 else "holdover")
    summary = tracker.summary(3.0 * KEEP_STATES)
    assert len(summary["state_history"]) == KEEP_STATES
    assert summary["state_changes"] == 3 * KEEP_STATES
    assert summary["state_history"][-1] == {"t_s": 3 * KEEP_STATES - 1, "state": "locked"}
    assert 0.49 < summary["locked_fraction"] < 0.51
