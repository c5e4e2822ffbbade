"""`ionpilot up`: the whole lab as supervised child processes, with a live status and a summary.

Children start in dependency order (hub, simulated lab, driver host, daemon), each ready before the
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
from ionpilot.config import DEFAULT_CONFIG, LabConfig
from ionpilot.runtime import load_or_report, wait_for_stop_signal
from ionpilot.supervisor import ChildSpec, Supervisor, ionpilot_argv

KEEP_STATES = 1000  # lock state changes kept for the summary

# Which subcommand runs each process of the lab file, in start order.
PROCESS_COMMANDS: dict[str, tuple[str, ...]] = {
    "sim": ("sim",),
    "drivers": ("drivers",),
    "daemon": ("daemon",),
    "sequencer": ("sequencer-service",),
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up", help="start the whole lab (hub, sim, drivers, daemon, sequencer service)"
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    parser.add_argument("--summary-json", default=None, help="write a JSON summary to FILE")
    parser.add_argument("--quiet", action="store_true", help="no live status")
    parser.add_argument("--gui", action="store_true", help="also open the operator console")
    parser.set_defaults(handler=run)


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
    locked_since: float | None = None
    locked_total: float = 0.0
    corrections: int = 0
    last_correction_hz: float | None = None
    states: list[tuple[float, str]] = field(default_factory=list)  # the newest KEEP_STATES
    state_changes: int = 0

    def on_state(self, now: float, state: str) -> None:
        if state == self.state:
            return
        if self.locked_since is not None:
            self.locked_total += now - self.locked_since
            self.locked_since = None
        if state == "locked":
            self.locked_since = now
            if self.first_locked is None:
                self.first_locked = now
        self.state = state
        self.states.append((now - self.started, state))
        self.state_changes += 1
        del self.states[:-KEEP_STATES]  # a lock that flaps for weeks: the newest changes

    def on_update(self, correction_hz: float) -> None:
        self.corrections += 1
        self.last_correction_hz = correction_hz

    def summary(self, now: float) -> dict[str, Any]:
        locked = self.locked_total + (now - self.locked_since if self.locked_since else 0.0)
        after_lock = now - self.first_locked if self.first_locked is not None else 0.0
        return {
            "time_to_lock_s": None
            if self.first_locked is None
            else self.first_locked - self.started,
            "locked_fraction": locked / after_lock if after_lock > 0 else 0.0,
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
        self.health = "unknown"
        self.dropped: dict[str, int] = {}  # the hub's count of refused publications, by sender
        # Under the lab's keys the hub forwards each topic from its owner only, so these
        # heartbeats and servo records are authenticated (`ionpilot.access`).
        self._sub = Subscriber(config.bus, prefixes=["hb.", "servo.clock.", "health.", "hub."])
        self.liveness = self._sub.liveness  # the subscriber beats it on every heartbeat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="up-watcher", daemon=True)

    def start(self) -> BusWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        from ionpilot.bus.codec import Telemetry

        while not self._stop.is_set():
            message = self._sub.recv(timeout=0.2)
            if message is None:
                continue
            if isinstance(message, Telemetry):
                self.on_telemetry(time.monotonic(), message.topic, message.value)

    def on_telemetry(self, now: float, topic: str, value: Any) -> None:
        """The daemon's contract: `servo.clock.state` (text), `servo.clock.correction` (Hz),
        `health.aggregate` (severity name)."""
        if topic == "servo.clock.state" and isinstance(value, str):
            self.tracker.on_state(now, value)
        elif topic == "servo.clock.correction" and isinstance(value, int | float):
            self.tracker.on_update(float(value))
        elif topic == "health.aggregate":
            self.health = str(value)
        elif topic == "hub.dropped" and isinstance(value, dict):
            self.dropped = {str(k): int(v) for k, v in value.items() if isinstance(v, int)}

    def heartbeat_age(self, source: str) -> float:
        return self.liveness.age(source)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sub.close()


def render_status(
    supervisor: Supervisor, tracker: LockTracker, watcher: BusWatcher, elapsed: float
) -> str:
    lines = [f"ionpilot up — {elapsed:7.1f} s"]
    for name, st in supervisor.status().items():
        age = st["heartbeat_age_s"]
        age_text = "—" if age is None or age == float("inf") else f"{age:4.1f} s"
        lines.append(
            f"  {name:<10} {st['state']:<9} pid {st['pid'] or '-':<8} restarts {st['restarts']}"
            f"  heartbeat {age_text}"
        )
    corr = tracker.last_correction_hz
    lines.append(
        f"  clock lock: {tracker.state}"
        + (f", last correction {corr:+.3f} Hz" if corr is not None else "")
        + f", {tracker.corrections} corrections; health {watcher.health}"
    )
    if watcher.dropped:
        refused = ", ".join(f"{who} {n}" for who, n in sorted(watcher.dropped.items()))
        lines.append(f"  hub refused (topics not owned): {refused}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    created = create_lab_keys(config)  # first run: the lab's bus keys, owner-only
    if created:
        print(f"created bus keys for {', '.join(created)} in {key_dir(config.lab.data_dir)}")
    config = with_lab_keys(config, OPERATOR)
    tracker = LockTracker(started=time.monotonic())
    watcher = BusWatcher(config, tracker)
    out: TextIO = sys.stdout
    supervisor = Supervisor(
        child_specs(args.config, config, gui=args.gui),
        heartbeat_age=watcher.heartbeat_age,
        stale_after_s=max(5.0, config.bus.stale_after * 2),
        backoff_initial_s=config.recovery.restart_backoff_initial,
        backoff_max_s=config.recovery.restart_backoff_max,
        on_event=lambda name, msg: print(f"[{name}] {msg}", file=out, flush=True),
    )
    stop = threading.Event()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    code = 0
    try:
        supervisor.start_all()
        watcher.start()

        def loop() -> None:
            last_print = 0.0
            while not stop.is_set():
                supervisor.tick()
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    stop.set()
                    return
                if not args.quiet and now - last_print >= 5.0:
                    print(
                        render_status(supervisor, tracker, watcher, now - tracker.started),
                        file=out,
                        flush=True,
                    )
                    last_print = now
                stop.wait(0.25)

        ticker = threading.Thread(target=loop, name="up-ticker", daemon=True)
        ticker.start()
        wait_for_stop_signal(stop)
        stop.set()
        ticker.join(5.0)
    except RuntimeError as exc:  # a child never became ready
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        supervisor.stop_all()
        watcher.stop()
    summary = {
        "config": args.config,
        "duration_s": time.monotonic() - tracker.started,
        **tracker.summary(time.monotonic()),
        "bus_secured": bool(config.bus.security.curve),
        "hub_refused": dict(watcher.dropped),
        "processes": {
            name: {"restarts": child.policy.restarts, "exit_codes": child.exit_codes}
            for name, child in supervisor.children.items()
        },
    }
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("time_to_lock_s", "locked_fraction", "corrections")}))
    return code
