"""`ionpilot up`: the whole lab as supervised child processes, with a live status and a summary.

Children start in dependency order (hub, simulated lab, driver host, sequencer, daemon), each ready before the
next; they are restarted with back-off when they exit or fall silent; Ctrl-C or `--duration` stops
them all (process groups, SIGTERM then SIGKILL) so nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ionpilot.access import create_lab_keys, with_lab_keys
from ionpilot.bus.labkeys import IDENTITY_ENV, OPERATOR, key_dir
from ionpilot.commands.up_status import LabView, StatusDisplay, status_line
from ionpilot.config import LabConfig
from ionpilot.labfile import add_config_option, lab_file
from ionpilot.ports import first_taken
from ionpilot.runtime import load_or_report, stop_signals_call, wait_for_stop_signal
from ionpilot.servo.uptime import UptimeAccount
from ionpilot.supervisor import ChildSpec, Supervisor, ionpilot_argv

KEEP_STATES = 1000  # lock state changes kept for the summary

# Which subcommand runs each process of the lab file, in start order.
PROCESS_COMMANDS: dict[str, tuple[str, ...]] = {
    "recorder": ("recorder",),  # first after the hub: it records the others' start
    "sim": ("sim",),
    "drivers": ("drivers",),
    "sequencer": ("sequencer-service",),  # before the daemon: its interrogations run there
    "daemon": ("daemon",),
}


def register(subparsers: Any) -> None:
    about = "start the whole lab (hub, sim, drivers, daemon, sequencer service); Ctrl-C stops it"
    parser = subparsers.add_parser("up", help=about, description=about)
    add_config_option(parser)
    parser.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS (> 0; default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--summary-json",
        default=None,
        metavar="FILE",
        help="write the run's summary (lock, health, alarms, restarts) to FILE",
    )
    parser.add_argument("--quiet", action="store_true", help="no live status line")
    parser.add_argument("--gui", action="store_true", help="also open the operator console")
    parser.set_defaults(handler=run)


def positive_seconds(text: str) -> float:
    """A duration for argparse: a finite number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} s: a duration must be above 0 s")
    return value


def driver_host_processes(config: LabConfig) -> list[str]:
    """The lab's driver hosts, in lab-file order: `drivers` (when declared) and every other
    process an enabled instrument names as its `host`."""
    hosting = {inst.host for inst in config.instruments.values() if inst.enabled}
    return [
        name
        for name in config.processes
        if name == "drivers" or (name in hosting and name not in PROCESS_COMMANDS)
    ]


def driver_host_cpus(count: int) -> list[str]:
    """A `--cpu` for each of `count` driver hosts: distinct CPUs while there are enough, from
    the last one down (the first host gets the CPU `--cpu auto` would pick). Two hosts pinned to
    one CPU would share it while another idles."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(allowed) < 2:
        return ["auto"] * count
    return [str(allowed[-1 - k % len(allowed)]) for k in range(count)]


def child_specs(config_path: str, config: LabConfig, gui: bool = False) -> list[ChildSpec]:
    specs = [
        ChildSpec(
            "hub",
            ionpilot_argv("hub", "--config", config_path),
            ready_prefix="hub:",
            heartbeat=None,
        ),
    ]
    identity = IDENTITY_ENV
    for process, command in PROCESS_COMMANDS.items():
        if process == "drivers":
            hosts = driver_host_processes(config)
            for host, cpu in zip(hosts, driver_host_cpus(len(hosts)), strict=True):
                argv = ("--config", config_path, "--process", host, "--cpu", cpu)
                specs.append(
                    ChildSpec(
                        host,
                        ionpilot_argv(*command, *argv),
                        heartbeat=host,
                        env=((identity, host),),
                    )
                )
        elif process in config.processes:
            specs.append(
                ChildSpec(
                    process,
                    ionpilot_argv(*command, "--config", config_path),
                    heartbeat=process,
                    env=((identity, process),),
                )
            )
    if gui:  # the console: the operator's window, closed at will, never restarted
        specs.append(
            ChildSpec(
                "gui",
                ionpilot_argv("gui", "--config", config_path),
                restart=False,
                wait_ready=False,
            )
        )
    return specs


@dataclass
class LockTracker:
    """Accounts the clock lock from its bus records: time to lock, fraction locked, corrections."""

    started: float
    state: str = "unknown"
    first_locked: float | None = None
    # the fraction locked since the first lock: the servo's own account (servo/uptime.py)
    account: UptimeAccount | None = None
    corrections: int = 0
    last_correction_hz: float | None = None
    states: list[tuple[float, str]] = field(default_factory=list)  # the newest KEEP_STATES
    state_changes: int = 0

    def on_state(self, now: float, state: str) -> None:
        if state == self.state:
            return
        if state == "locked" and self.account is None:
            self.first_locked = now
            self.account = UptimeAccount(now)
        if self.account is not None:
            self.account.observe(now, state == "locked")
        self.state = state
        self.states.append((now - self.started, state))
        self.state_changes += 1
        del self.states[:-KEEP_STATES]  # a lock that flaps for weeks: the newest changes

    def on_update(self, correction_hz: float) -> None:
        self.corrections += 1
        self.last_correction_hz = correction_hz

    def summary(self, now: float) -> dict[str, Any]:
        fraction = 0.0
        if self.account is not None:
            self.account.observe(now, self.state == "locked")
            fraction = self.account.uptime
        return {
            "time_to_lock_s": None
            if self.first_locked is None
            else self.first_locked - self.started,
            "locked_fraction": fraction,
            "corrections": self.corrections,
            "last_correction_hz": self.last_correction_hz,
            "final_state": self.state,
            "state_changes": self.state_changes,
            "state_history": [{"t_s": round(t, 3), "state": s} for t, s in self.states],
        }


class BusWatcher:
    """Subscribes to heartbeats and servo records for the status display and the summary."""

    def __init__(self, config: LabConfig, tracker: LockTracker) -> None:
        from ionpilot.bus.pubsub import Subscriber

        self.tracker = tracker
        self.view = LabView()
        self.dropped: dict[str, int] = {}  # the hub's count of refused publications, by sender
        # Under the lab's keys the hub forwards each topic from its owner only, so these
        # heartbeats and servo records are authenticated (`ionpilot.access`).
        self._sub = Subscriber(
            config.bus, prefixes=["hb.", "servo.clock.", "health.", "evt.", "hub."]
        )
        self.liveness = self._sub.liveness  # the subscriber beats it on every heartbeat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="up-watcher", daemon=True)

    def start(self) -> BusWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        from ionpilot.bus.codec import Event, Telemetry

        while not self._stop.is_set():
            message = self._sub.recv(timeout=0.2)
            if message is None:
                continue
            if isinstance(message, Telemetry):
                self.on_telemetry(time.monotonic(), message.topic, message.value)
            elif isinstance(message, Event):
                self.view.on_event(time.monotonic(), message.kind, message.message)

    def on_telemetry(self, now: float, topic: str, value: Any) -> None:
        """The daemon's contract: `servo.clock.state` (text), `servo.clock.correction` (Hz),
        `health.<signal>` and `health.aggregate` (maps with a `severity` name)."""
        if topic == "servo.clock.state" and isinstance(value, str):
            self.tracker.on_state(now, value)
        elif topic == "servo.clock.correction" and isinstance(value, int | float):
            self.tracker.on_update(float(value))
        elif topic.startswith("health."):
            self.view.on_health(topic.removeprefix("health."), value)
        elif topic == "hub.dropped" and isinstance(value, dict):
            self.dropped = {str(k): int(v) for k, v in value.items() if isinstance(v, int)}

    def heartbeat_age(self, source: str) -> float:
        return self.liveness.age(source)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # it never started when a child failed to start
            self._thread.join(2.0)
        self._sub.close()


def render_status(
    supervisor: Supervisor, tracker: LockTracker, watcher: BusWatcher, elapsed: float
) -> str:
    """The one status line (see `up_status.status_line`), with the hub's refusals if any."""
    line = status_line(
        elapsed,
        lock_state=tracker.state,
        corrections=tracker.corrections,
        view=watcher.view,
        processes=supervisor.status(),
        now=time.monotonic(),
    )
    if watcher.dropped:
        refused = ", ".join(f"{who} {n}" for who, n in sorted(watcher.dropped.items()))
        line += f" | hub refused (topics not owned): {refused}"
    return line


def run(args: argparse.Namespace) -> int:
    args.config = lab_file(args.config)
    config = load_or_report(args.config)
    if config is None:
        return 2
    taken = first_taken(config)  # at once, not after a child failed to bind and timed out
    if taken is not None:
        print(f"error: {taken}", file=sys.stderr)
        return 2
    created = create_lab_keys(config)  # first run: the lab's bus keys, owner-only
    if created:
        print(f"created bus keys for {', '.join(created)} in {key_dir(config.lab.data_dir)}")
    config = with_lab_keys(config, OPERATOR)
    tracker = LockTracker(started=time.monotonic())
    watcher = BusWatcher(config, tracker)
    out: TextIO = sys.stdout
    display = StatusDisplay(out)
    supervisor = Supervisor(
        child_specs(args.config, config, gui=args.gui),
        heartbeat_age=watcher.heartbeat_age,
        stale_after_s=max(5.0, config.bus.stale_after * 2),
        backoff_initial_s=config.recovery.restart_backoff_initial,
        backoff_max_s=config.recovery.restart_backoff_max,
        on_event=lambda name, msg: display.line(f"[{name}] {msg}"),
        log_dir=Path(config.lab.data_dir) / "logs",
    )
    stop = threading.Event()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    code = 0
    try:
        supervisor.start_all()
        watcher.start()

        def loop() -> None:
            while not stop.is_set():
                supervisor.tick()
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    stop.set()
                    return
                if not args.quiet and display.due(now):
                    line = render_status(supervisor, tracker, watcher, now - tracker.started)
                    display.status(line, now)
                stop.wait(0.25)

        ticker = threading.Thread(target=loop, name="up-ticker", daemon=True)
        ticker.start()
        wait_for_stop_signal(stop)
        stop.set()
        ticker.join(5.0)
    except RuntimeError as exc:  # a child never became ready
        display.finish()
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:  # Ctrl-C while the children were still starting
        display.finish()
        print("stopped by Ctrl-C while the lab was starting", file=sys.stderr)
        code = 130
    finally:
        display.finish()

        def hurry() -> None:  # a second Ctrl-C / SIGTERM: no grace periods, and still no orphan
            print("second stop signal: killing every child now (SIGKILL)", file=sys.stderr)
            supervisor.kill_all_now()

        with stop_signals_call(hurry):
            supervisor.stop_all()
        watcher.stop()
    summary = {
        "config": args.config,
        "duration_s": time.monotonic() - tracker.started,
        **tracker.summary(time.monotonic()),
        **watcher.view.summary(),
        "bus_secured": bool(config.bus.security.curve),
        "hub_refused": dict(watcher.dropped),
        "processes": {
            name: {"restarts": child.policy.restarts, "exit_codes": child.exit_codes}
            for name, child in supervisor.children.items()
        },
    }
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    keys = ("time_to_lock_s", "locked_fraction", "corrections", "alarms_raised")
    print(json.dumps({k: summary[k] for k in keys}))
    return code
