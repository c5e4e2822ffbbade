"""Supervision of ionpilot's child processes: start them, notice death by exit *and* by silent
heartbeat, restart with capped exponential back-off (never in a tight loop), and stop them all
cleanly — SIGTERM to each process group, SIGKILL after a grace period, so no orphan survives.

The restart decisions (`RestartPolicy`) run on an injectable clock and are tested on virtual
time; `Supervisor` is the thin layer of real processes around them.

A child's stdout and stderr go to one pipe that a thread drains for as long as the child lives,
whatever it writes (bytes that are not UTF-8, lines of any length, no newline at all) and whatever
a line callback does: a child must never block on a full pipe. Lines are cut at
`MAX_LINE_BYTES`; the bookkeeping per child (last lines, exit codes) is bounded. With a `log_dir`
every line (and every start and death) also goes to `<log_dir>/<name>.log`, rotated at
`LOG_BYTES` with `LOG_BACKUPS` old files kept (`ionpilot logs NAME` reads them).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ionpilot.core.backoff import Backoff
from ionpilot.core.clock import Clock, SystemClock

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
MAX_LINE_BYTES = 8192  # a longer line is passed on in pieces of this size
KEEP_EXIT_CODES = 100  # the newest exit codes per child (a crash loop runs for weeks)
LOG_BYTES = 10_000_000  # a child's log file is rotated at this size
LOG_BACKUPS = 5  # rotated files kept per child: at most 60 MB of log per process


class ChildLog:
    """One child's rotating log file: its output lines, time-stamped (thread-safe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))

    def write(self, line: str) -> None:
        record = logging.LogRecord(self.path.stem, logging.INFO, "", 0, line, None, None)
        self._handler.handle(record)

    def close(self) -> None:
        self._handler.close()


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: its command line, the line it prints when ready, its heartbeat."""

    name: str
    argv: tuple[str, ...]
    ready_prefix: str = "ready"
    heartbeat: str | None = None  # bus source name whose `hb.<name>` proves it alive
    startup_grace_s: float = 20.0  # heartbeats are not expected before this
    restart: bool = True
    wait_ready: bool = True  # start_all waits for the ready line before starting the next
    env: tuple[tuple[str, str], ...] = ()  # set in the child's environment (its bus identity)


class RestartPolicy:
    """When to restart a child: capped exponential back-off that resets only after the child has
    stayed up `stable_after_s`, so a crash loop slows down instead of spinning."""

    def __init__(
        self,
        clock: Clock,
        initial_s: float = 1.0,
        maximum_s: float = 60.0,
        stable_after_s: float = 60.0,
    ) -> None:
        self._clock = clock
        self.backoff = Backoff(initial_s, maximum_s)
        self.stable_after_s = stable_after_s
        self.started_at: float | None = None
        self.restart_at: float | None = None
        self.restarts = 0

    def started(self) -> None:
        self.started_at = self._clock.now()
        self.restart_at = None

    def died(self) -> float:
        """Record a death; returns the delay before the restart."""
        now = self._clock.now()
        if self.started_at is not None and now - self.started_at >= self.stable_after_s:
            self.backoff.reset()
        delay = self.backoff.next_delay()
        self.restart_at = now + delay
        self.started_at = None
        return delay

    def due(self) -> bool:
        return self.restart_at is not None and self._clock.now() >= self.restart_at


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """A running (or waiting-to-restart) child process and its bookkeeping."""

    spec: ChildSpec
    policy: RestartPolicy
    process: subprocess.Popen[bytes] | None = None
    state: str = "stopped"  # starting, running, dead, backoff, stopped
    ready: threading.Event = field(default_factory=threading.Event)
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    exit_codes: list[int] = field(default_factory=list)  # the newest KEEP_EXIT_CODES
    deaths: int = 0  # exits ever seen
    heartbeat_deaths: int = 0
    lines: int = 0  # output lines ever read

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class Supervisor:
    """Runs children; `tick()` (called periodically) restarts the dead and the silent."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        clock: Clock | None = None,
        heartbeat_age: Callable[[str], float] | None = None,
        stale_after_s: float = 5.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        on_line: Callable[[str, str], None] | None = None,
        on_event: Callable[[str, str], None] | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self.logs: dict[str, ChildLog] = (
            {s.name: ChildLog(Path(log_dir) / f"{s.name}.log") for s in specs}
            if log_dir is not None
            else {}
        )
        self.children = {
            s.name: Child(s, RestartPolicy(self._clock, backoff_initial_s, backoff_max_s))
            for s in specs
        }
        self._heartbeat_age = heartbeat_age
        self.stale_after_s = stale_after_s
        self._on_line = on_line
        report = on_event or (lambda name, message: log.info("%s: %s", name, message))

        def on_event_logged(name: str, message: str) -> None:
            child_log = self.logs.get(name)
            if child_log is not None:
                child_log.write(f"[supervisor] {message}")
            report(name, message)

        self._on_event = on_event_logged
        self._lock = threading.Lock()
        self._stopping = False

    # ------------------------------------------------------------------------ processes

    def start(self, name: str) -> Child:
        child = self.children[name]
        child.ready.clear()
        child.process = subprocess.Popen(
            child.spec.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **dict(child.spec.env)} if child.spec.env else None,
            # bytes, not text: decoding is the pump's job, and there it never fails
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (setsid + PDEATHSIG; no threads touched)
        )
        child.state = "starting"
        child.policy.started()
        threading.Thread(
            target=self._pump, args=(child, child.process), name=f"out-{name}", daemon=True
        ).start()
        self._on_event(name, f"started (pid {child.process.pid})")
        return child

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        """Drain the child's output until EOF, whatever arrives (see the module docstring)."""
        stream = process.stdout
        assert stream is not None
        try:
            while True:
                raw = stream.readline(MAX_LINE_BYTES)  # what is there, up to a newline
                if not raw:
                    return
                self._line(child, process, raw.rstrip(b"\r\n").decode("utf-8", "replace"))
        except (OSError, ValueError):  # the pipe was closed under us
            return
        finally:
            with contextlib.suppress(OSError):
                stream.close()

    def _line(self, child: Child, process: subprocess.Popen[bytes], line: str) -> None:
        child.lines += 1
        child.last_lines.append(line)
        child_log = self.logs.get(child.spec.name)
        if child_log is not None:
            try:
                child_log.write(line)
            except OSError:  # a full disk must not stop the draining
                log.exception("supervisor: cannot write the log of %s", child.spec.name)
        if line.startswith(child.spec.ready_prefix) and process is child.process:
            child.ready.set()
            if child.state == "starting":
                child.state = "running"
        if self._on_line is not None:
            try:
                self._on_line(child.spec.name, line)
            except Exception:  # a bad callback must not stop the draining
                log.exception("supervisor: line callback failed for %s", child.spec.name)

    def start_all(self, ready_timeout_s: float = 60.0) -> None:
        """Start the children in order, each one ready before the next (the hub before its users)."""
        for name, child in self.children.items():
            self.start(name)
            if child.spec.wait_ready and not child.ready.wait(ready_timeout_s):
                tail = "\n".join(child.last_lines) or "(no output)"
                raise RuntimeError(
                    f"{name} did not become ready in {ready_timeout_s:.0f} s:\n{tail}"
                )

    def tick(self) -> None:
        """Notice deaths (exit or stale heartbeat) and run due restarts."""
        with self._lock:
            if self._stopping:
                return
            for name, child in self.children.items():
                self._check(name, child)

    def _check(self, name: str, child: Child) -> None:
        process = child.process
        if child.state in ("starting", "running") and process is not None:
            code = process.poll()
            if code is not None:
                child.deaths += 1
                child.exit_codes.append(code)
                del child.exit_codes[:-KEEP_EXIT_CODES]
                self._kill_group(process.pid)  # what it started must not outlive it
                self._dead(child, f"exited with code {code}")
                return
            if child.state == "running" and self._silent(child):
                child.heartbeat_deaths += 1
                self._kill(process)
                self._dead(child, "stopped sending heartbeats; killed")
                return
        if child.state == "backoff" and child.policy.due():
            child.policy.restarts += 1
            self.start(name)

    def _silent(self, child: Child) -> bool:
        source = child.spec.heartbeat
        if source is None or self._heartbeat_age is None:
            return False
        started = child.policy.started_at
        if started is None or self._clock.now() - started < child.spec.startup_grace_s:
            return False
        return self._heartbeat_age(source) > self.stale_after_s

    def _dead(self, child: Child, reason: str) -> None:
        child.process = None
        if not child.spec.restart:
            child.state = "dead"
            self._on_event(child.spec.name, f"{reason}; not restarted")
            return
        delay = child.policy.died()
        child.state = "backoff"
        self._on_event(child.spec.name, f"{reason}; restarting in {delay:.1f} s")

    @staticmethod
    def _kill_group(pgid: int) -> None:
        """SIGKILL what is left of an exited child's process group (its own children still
        holding ports, or the output pipe open). Safe: a group id is not reused while any
        process is in the group, and the child's setsid made the group its own."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    @staticmethod
    def _kill(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
        """SIGTERM the child's process group, SIGKILL it after `grace_s`."""
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(grace_s)

    def kill_all_now(self) -> None:
        """SIGKILL every child's process group at once: an operator's second stop signal while
        `stop_all` is waiting out a grace period. Safe from a signal handler (no lock: the
        handler may interrupt `stop_all` in the thread that holds it); `stop_all` then reaps
        the killed children without waiting."""
        self._stopping = True
        for child in list(self.children.values()):
            process = child.process
            if process is not None and process.poll() is None:
                self._kill_group(process.pid)

    def stop_all(self) -> None:
        """Stop children in reverse start order; nothing is left behind."""
        with self._lock:
            self._stopping = True
            for child in reversed(list(self.children.values())):
                if child.process is not None:
                    self._kill(child.process)
                    child.process = None
                child.state = "stopped"
            for child_log in self.logs.values():
                child_log.close()

    def status(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name, child in self.children.items():
            age = None
            if child.spec.heartbeat and self._heartbeat_age is not None:
                age = self._heartbeat_age(child.spec.heartbeat)
            out[name] = {
                "state": child.state,
                "pid": child.pid,
                "restarts": child.policy.restarts,
                "heartbeat_age_s": age,
            }
        return out


def ionpilot_argv(*args: str) -> tuple[str, ...]:
    """The command line of an ionpilot subcommand run by this same interpreter."""
    return (sys.executable, "-m", "ionpilot.cli", *args)
