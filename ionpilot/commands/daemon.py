"""`ionpilot daemon --config PATH`: the servo daemon, live against the driver hosts over the bus."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ionpilot.config import DEFAULT_CONFIG
from ionpilot.runtime import load_or_report, run_service


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("daemon", help="run the servo daemon (clock lock) live")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    parser.add_argument("--state-dir", default=None, help="where lock state is persisted")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    from ionpilot.bus.client import CommandClient
    from ionpilot.bus.directory import Directory
    from ionpilot.servo.daemon import Daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s daemon %(levelname)s %(message)s")
    directory = Directory.from_config(config.bus.host, config.processes, config.instruments)
    drivers = CommandClient(config.bus, directory.resolve(config.servo.clock_lock.pulser))
    state_dir = Path(args.state_dir or Path(config.lab.data_dir) / "servo")
    port = config.processes["daemon"].command_port
    daemon = Daemon(
        config.servo.clock_lock,
        config.servo.pulses,
        config.bus,
        drivers_call=drivers.call,
        command_endpoint=f"tcp://{config.bus.host}:{port}",
        state_dir=state_dir,
        aux_locks=dict(config.servo.aux_locks),
        recovery=config.recovery,
        health=config.health,
    )

    def stop() -> None:
        daemon.stop()
        drivers.close()

    return run_service(daemon.start, stop, f"ready daemon (state in {state_dir})")
