"""`ionpilot gui --config PATH [--screenshot FILE.png --panel NAME --after SECONDS]`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ionpilot.config import LabConfig
from ionpilot.labfile import add_config_option, lab_file
from ionpilot.runtime import load_or_report

PANELS = ("overview", "instruments", "plots", "clock", "health", "sequencer", "simulation")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("gui", help="the operator console (PyQt6)")
    add_config_option(parser)
    parser.add_argument("--screenshot", metavar="FILE.png", help="render a panel to FILE and exit")
    parser.add_argument("--panel", choices=PANELS, default="overview", help="panel to show")
    parser.add_argument(
        "--after", type=float, default=5.0, metavar="SECONDS", help="wait before the screenshot"
    )
    parser.add_argument("--size", default="1600x1000", metavar="WxH", help="screenshot size")
    parser.set_defaults(handler=run)


def lab_facts(config: LabConfig) -> Any:
    """What the console needs to know of the lab, as plain values."""
    from ionpilot.gui.context import LabFacts
    from ionpilot.servo.interrogation import lock_probe, update_interval_s

    lock = config.servo.clock_lock
    return LabFacts(
        name=config.lab.name,
        processes=tuple(config.processes),
        simulated="sim" in config.processes,
        clock_frequency_hz=lock.clock_frequency,
        qpn_coefficient=lock_probe(lock).qpn_coefficient(lock.clock_frequency),
        update_interval_s=update_interval_s(lock),
        device=config.device,
    )


def run(args: argparse.Namespace) -> int:
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"error: --size must look like 1600x1000, found {args.size!r}", file=sys.stderr)
        return 2
    if args.after < 0:
        print("error: --after must be zero or more seconds", file=sys.stderr)
        return 2
    if args.screenshot and not args.screenshot.lower().endswith(".png"):
        print("error: --screenshot writes PNG: give a FILE.png", file=sys.stderr)
        return 2
    args.config = lab_file(args.config)
    config = load_or_report(args.config)
    if config is None:
        return 2
    from ionpilot.bus.directory import Directory
    from ionpilot.gui.app import run_console
    from ionpilot.gui.settings import GuiSettings

    directory = Directory.from_config(config.bus.host, config.processes, config.instruments)
    settings = getattr(config, "gui", None)
    return run_console(
        config.bus,
        directory,
        lab_facts(config),
        settings if isinstance(settings, GuiSettings) else GuiSettings(),
        screenshot=args.screenshot,
        panel=args.panel,
        after=args.after,
        size=(width, height),
    )
