"""`ionpilot daemon --config PATH`: the servo daemon, live against the driver hosts over the bus."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ionpilot.labfile import add_config_option, lab_file
from ionpilot.runtime import load_or_report, run_service

if TYPE_CHECKING:
    from ionpilot.config import LabConfig


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("daemon", help="run the servo daemon (clock lock) live")
    add_config_option(parser)
    parser.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="where lock state is persisted (default: the lab's data_dir/servo)",
    )
    parser.set_defaults(handler=run)


def driver_hosts(config: LabConfig) -> dict[str, tuple[str, ...]]:
    """Every driver host the lab file declares -> the instruments it serves."""
    hosts: dict[str, list[str]] = {}
    for name, instrument in config.instruments.items():
        hosts.setdefault(instrument.host, []).append(name)
    return {host: tuple(names) for host, names in hosts.items()}


def run(args: argparse.Namespace) -> int:
    args.config = lab_file(args.config)
    config = load_or_report(args.config)
    if config is None:
        return 2
    from ionpilot.bus.codec import BusError
    from ionpilot.bus.directory import Directory
    from ionpilot.script import Lab
    from ionpilot.servo.daemon import Daemon, lock_hold_call

    logging.basicConfig(level=logging.INFO, format="%(asctime)s daemon %(levelname)s %(message)s")
    log = logging.getLogger("ionpilot.daemon")
    directory = Directory.from_config(config.bus.host, config.processes, config.instruments)
    lab = Lab(directory, config.bus, name="daemon")  # routes each target to its process

    def hold_jobs(hold: bool, reason: str) -> None:
        """Hold user jobs on the sequencer service during a recovery (if it runs)."""
        if "sequencer" not in config.processes:
            return
        args = {"name": "hold", "reason": reason} if hold else {"name": "resume"}
        try:
            lab.call("sequencer", "call", dict(args), timeout=1.0)
        except BusError as exc:
            log.warning("sequencer jobs not %s: %s", "held" if hold else "resumed", exc)

    def hold_for_lock(hold: bool, reason: str) -> bool:
        """Hold user jobs while the clock lock is not `locked` (a hold of its own); whether the
        sequencer took it (it is sent again if not)."""
        if "sequencer" not in config.processes:
            return True
        try:
            lab.call("sequencer", "call", lock_hold_call(hold, reason), timeout=1.0)
        except BusError as exc:
            log.warning("sequencer jobs not %s: %s", "held" if hold else "resumed", exc)
            return False
        return True

    def tell_lease(laser: str, lease: dict[str, Any] | None) -> bool:
        """Tell the sequencer who borrows the clock laser or the trap (None: taken back), so
        that borrower's clock-kind schedules are taken (and nobody else's)."""
        if "sequencer" not in config.processes:
            return False
        args = {"name": "lease", "laser": laser, **(lease or {"end": True})}
        try:
            lab.call("sequencer", "call", args, timeout=1.0)
        except BusError as exc:
            log.warning("sequencer not told of the %s lease: %s", laser, exc)
            return False
        return True

    state_dir = Path(args.state_dir or Path(config.lab.data_dir) / "servo")
    port = config.processes["daemon"].command_port
    daemon = Daemon(
        config.servo.clock_lock,
        config.servo.pulses,
        config.bus,
        drivers_call=lab.call,
        command_endpoint=f"tcp://{config.bus.host}:{port}",
        state_dir=state_dir,
        aux_locks=dict(config.servo.aux_locks),
        recovery=config.recovery,
        health=config.health,
        hold_jobs=hold_jobs,
        device=config.device,
        lock_hold=hold_for_lock,
        driver_hosts=driver_hosts(config),
        lease_hook=tell_lease,
    )

    metrics: list[Any] = []

    def start() -> None:
        daemon.start()
        port = config.metrics.ports.get("daemon")
        if port:  # Prometheus /metrics (lock state, health per signal, uptime, recoveries)
            from ionpilot.metrics import daemon_snapshot, serve_metrics

            snapshot = lambda: daemon_snapshot(daemon.metrics())  # noqa: E731
            metrics.append(serve_metrics("daemon", snapshot, port, config.metrics.host))

    def stop() -> None:
        for server in metrics:
            server.shutdown()
        daemon.stop()
        lab.close()

    return run_service(start, stop, f"ready daemon (state in {state_dir})")
