"""What `ionpilot up` tells the operator while the lab runs: one status line (rewritten in place
on a terminal, a plain line every `PLAIN_EVERY_S` otherwise) with the clock lock, health, alarms,
uptime and the last event, in the lab's words; and the health figures of the run's summary."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

PLAIN_EVERY_S = 10.0  # a log (not a terminal) gets one status line this often
TTY_EVERY_S = 1.0
ALARMING = ("MINOR", "MAJOR", "INVALID")  # any severity above OK is an alarm to count


@dataclass
class SignalRecord:
    """One signal's health as seen on `health.<signal>` during the run."""

    severity: str = "OK"
    reason: str = ""
    raised: int = 0  # times it left OK
    worst: str = "OK"
    first_reason: str = ""


@dataclass
class LabView:
    """Health, alarms and events as the bus tells them (thread-safe: the watcher writes, the
    display reads)."""

    signals: dict[str, SignalRecord] = field(default_factory=dict)
    aggregate: str = "unknown"
    unacknowledged: str = ""
    last_event: tuple[float, str] | None = None  # (monotonic time, text)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_health(self, signal: str, value: Any) -> None:
        """`health.<signal>` and `health.aggregate` maps (their `severity` names)."""
        if not isinstance(value, dict):
            return
        severity = str(value.get("severity", "unknown"))
        with self._lock:
            if signal == "aggregate":
                self.aggregate = severity
                self.unacknowledged = str(value.get("unacknowledged", ""))
                return
            record = self.signals.setdefault(signal, SignalRecord())
            reason = str(value.get("reason", ""))
            if severity in ALARMING and record.severity not in ALARMING:
                record.raised += 1
                record.first_reason = record.first_reason or reason
            if _rank(severity) > _rank(record.worst):
                record.worst = severity
            record.severity, record.reason = severity, reason

    def on_event(self, now: float, kind: str, message: str) -> None:
        with self._lock:
            self.last_event = (now, f"{kind.replace('_', ' ')}: {message}" if message else kind)

    def alarms_now(self) -> list[str]:
        """`signal SEVERITY (reason)` for every signal not OK now, worst first."""
        with self._lock:
            bad = [(n, r) for n, r in self.signals.items() if r.severity in ALARMING]
        bad.sort(key=lambda item: -_rank(item[1].severity))
        return [f"{n} {r.severity} ({r.reason})" for n, r in bad]

    def summary(self) -> dict[str, Any]:
        """The run's health for `--summary-json`: how many alarms were raised, on what."""
        with self._lock:
            raised = {n: r for n, r in self.signals.items() if r.raised}
            return {
                "alarms_raised": sum(r.raised for r in raised.values()),
                "alarms": {
                    n: {"times": r.raised, "worst": r.worst, "first_reason": r.first_reason}
                    for n, r in sorted(raised.items())
                },
                "health_signals_seen": len(self.signals),
                "final_health": self.aggregate,
            }


def _rank(severity: str) -> int:
    return ALARMING.index(severity) + 1 if severity in ALARMING else 0


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def status_line(
    elapsed_s: float,
    *,
    lock_state: str,
    corrections: int,
    view: LabView,
    processes: dict[str, dict[str, Any]],
    now: float,
) -> str:
    """One line: `up 2 min 05 s | clock locked, 47 corrections | health OK | no alarms |
    5/5 processes running | last event 12 s ago: lock state: ...`."""
    running = sum(1 for st in processes.values() if st.get("state") == "running")
    restarts = sum(int(st.get("restarts") or 0) for st in processes.values())
    alarms = view.alarms_now()
    alarm_text = (
        "no alarms"
        if not alarms
        else f"{len(alarms)} alarm{'s' if len(alarms) != 1 else ''}: {alarms[0]}"
    )
    parts = [
        f"up {_duration(elapsed_s)}",
        f"clock {lock_state}, {corrections} corrections",
        f"health {view.aggregate}",
        alarm_text,
        f"{running}/{len(processes)} processes running"
        + (f", {restarts} restarts" if restarts else ""),
    ]
    if view.last_event is not None:
        at, text = view.last_event
        parts.append(f"last event {_duration(now - at)} ago: {text}")
    return " | ".join(parts)


class StatusDisplay:
    """The status line in place on a terminal (`\\r` and clear-to-end), else plain lines; other
    output (a child restarted) goes on its own line above it."""

    def __init__(self, out: TextIO, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.every_s = TTY_EVERY_S if self.tty else PLAIN_EVERY_S
        self._shown = False
        self._last = -float("inf")
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        return now - self._last >= self.every_s

    def status(self, line: str, now: float | None = None) -> None:
        self._last = time.monotonic() if now is None else now
        with self._lock:
            if self.tty:
                width = shutil.get_terminal_size((120, 24)).columns - 1
                text = line if len(line) <= width else line[: width - 1] + "…"
                self.out.write(f"\r{text}\x1b[K")
                self._shown = True
            else:
                self.out.write(line + "\n")
            self.out.flush()

    def line(self, text: str) -> None:
        """A line of its own (an event); the status line is redrawn at its next update."""
        with self._lock:
            if self._shown:
                self.out.write("\r\x1b[K")
                self._shown = False
            self.out.write(text + "\n")
            self.out.flush()

    def finish(self) -> None:
        """Leave the status line behind, so what follows (the summary) starts a fresh line."""
        with self._lock:
            if self._shown:
                self.out.write("\n")
                self._shown = False
            elif self.tty:
                self.out.write("\r\x1b[K")  # the terminal's own `^C` echo
            self.out.flush()
