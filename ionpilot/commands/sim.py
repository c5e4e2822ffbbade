"""`ionpilot sim`: run the simulated lab; `ionpilot sim fault KIND [TARGET]` and
`ionpilot sim restore NAME` inject faults into a running one over the bus (target `sim`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ionpilot.config import ConfigError, LabConfig, load_config
from ionpilot.labfile import add_config_option, announce, lab_file


def register(subparsers: Any) -> None:
    about = "run the simulated lab, or inject a fault into the running one"
    parser = subparsers.add_parser("sim", help=about, description=about)
    add_config_option(parser)
    parser.add_argument(
        "--speed", type=float, metavar="RATIO", help="world seconds per real second (1)"
    )
    parser.add_argument("--seed", type=int, help="random seed (reproducible runs)")
    parser.add_argument(
        "--scenario", metavar="FILE", help="YAML list of {at, fault, target} to replay"
    )
    parser.set_defaults(handler=run_sim)
    actions = parser.add_subparsers(dest="sim_action", metavar="ACTION")
    about = "inject a fault into the running simulated lab"
    fault = actions.add_parser("fault", help=about, description=about)
    fault.add_argument(
        "kind",
        metavar="KIND",
        help="ion_loss, ion_dark, mode_hop, cavity_unlock, rf_trip, stray_field_step, ...",
    )
    fault.add_argument(
        "target", nargs="?", metavar="TARGET", help="laser or instrument name, ion index"
    )
    add_config_option(fault, nested=True)
    fault.set_defaults(handler=run_fault)
    about = "clear a fault on an instrument or a part of the lab (ion, cavity, rf, laser_369...)"
    restore = actions.add_parser("restore", help=about, description=about)
    restore.add_argument(
        "target", metavar="TARGET", help="instrument name, or ion, cavity, comb, rf, laser_369..."
    )
    add_config_option(restore, nested=True)
    restore.set_defaults(handler=run_restore, kind="restore")


def _load(path: str) -> LabConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
    return None


def run_sim(args: argparse.Namespace) -> int:
    from ionpilot.sim.process import run_lab
    from ionpilot.sim.scenario import load_scenario

    args.config = lab_file(args.config)
    config = _load(args.config)
    if config is None:
        return 2
    settings = config.sim
    try:
        if args.speed is not None:
            settings = dataclasses.replace(settings, speed=args.speed)
        if args.seed is not None:
            settings = dataclasses.replace(settings, seed=args.seed)
        scenario = load_scenario(args.scenario) if args.scenario else None
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    instruments = {
        name: (inst.model, inst.address)
        for name, inst in config.instruments.items()
        if inst.enabled
    }
    process = config.processes.get("sim")
    port = process.command_port if process is not None else None

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        return run_lab(
            instruments, settings, bus=config.bus, command_port=port, scenario=scenario, out=out
        )
    except OSError as exc:
        print(f"error: cannot start the simulated lab: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_fault(args: argparse.Namespace) -> int:
    from ionpilot.bus import BusError, CommandClient

    given = args.config
    args.config = lab_file(given)
    config = _load(args.config)
    if config is None:
        return 2
    announce(given, config)
    process = config.processes.get("sim")
    if process is None:
        print("error: the lab file has no processes.sim.command_port", file=sys.stderr)
        return 2
    endpoint = f"tcp://{config.bus.host}:{process.command_port}"
    call: dict[str, Any] = {"name": "restore" if args.kind == "restore" else "fault"}
    if args.kind != "restore":
        call["kind"] = args.kind
    if args.target is not None:
        call["target"] = args.target
    with CommandClient(config.bus, endpoint, name="ionpilot-sim-cli") as client:
        try:
            result = client.call("sim", "call", call, timeout=5.0, retries=0)
        except BusError as exc:
            hint = "; is the lab up (`ionpilot up`)?" if exc.code == "timeout" else ""
            print(f"error: {exc.message} ({exc.code}){hint}", file=sys.stderr)
            return 2 if exc.code == "bad_request" else 1
    text = result.get("result") if isinstance(result, dict) else result
    print(" ".join(p for p in (args.kind, args.target) if p) + f": {text}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    return run_fault(args)
