"""What every long-running ionpilot process shares: load the lab file or exit 2 with its errors,
and run until SIGINT/SIGTERM, then stop cleanly (the supervisor relies on a clean SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from ionpilot.config import ConfigError, LabConfig, load_config


def load_or_report(path: str | Path) -> LabConfig | None:
    """The validated lab config, or None after printing every error (the caller exits 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        report_config_error(path, exc)
        return None


def format_config_error(path: str | Path, exc: ConfigError) -> str:
    """`path is invalid (N problems):` and one indented line per problem."""
    count = len(exc.issues)
    lines = [f"{path} is invalid ({count} problem{'s' if count != 1 else ''}):"]
    lines += [f"  {issue}" for issue in exc.issues]
    return "\n".join(lines)


def report_config_error(path: str | Path, exc: ConfigError) -> None:
    print(f"error: {format_config_error(path, exc)}", file=sys.stderr)


@contextlib.contextmanager
def stop_signals_call(action: Callable[[], object]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call `action` (in the main thread) instead of their
    default; the previous handlers come back on leaving."""

    def handler(signum: int, frame: FrameType | None) -> None:
        action()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def wait_for_stop_signal(
    stop: threading.Event | None = None, duration: float | None = None
) -> None:
    """Block until SIGINT/SIGTERM (or `stop` is set, or `duration` seconds pass)."""
    event = stop or threading.Event()
    with stop_signals_call(event.set):
        event.wait(duration)


def run_service(start: Callable[[], object], stop: Callable[[], object], ready: str) -> int:
    """Start a service, print its ready line (flushed: the supervisor waits for it), run until
    signalled, then stop it."""
    start()
    try:
        # one write, so another thread's output cannot land inside the line
        sys.stdout.write(f"{ready}\n")
        sys.stdout.flush()
        wait_for_stop_signal()
    finally:
        stop()
    return 0
