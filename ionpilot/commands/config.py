"""`ionpilot config check|show`: validate a lab file and summarise it, or print it resolved."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from ionpilot.config import ConfigError, LabConfig, load_config_with_marks
from ionpilot.core.units import format_quantity
from ionpilot.labfile import lab_file
from ionpilot.runtime import report_config_error


def register(subparsers: Any) -> None:
    about = "check or show a lab configuration"
    parser = subparsers.add_parser("config", help=about, description=about)
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    for verb, about, handler in (
        ("check", "validate a lab file and print a one-screen summary", run_check),
        ("show", "print the resolved configuration (includes merged)", run_show),
    ):
        action = actions.add_parser(verb, help=about, description=about)
        action.add_argument(
            "path",
            nargs="?",
            default=None,
            metavar="FILE",
            help="lab file (default: configs/sim-lab.yaml here, else the one installed)",
        )
        action.set_defaults(handler=handler)
    about = "print the lab file reference (every section and key), generated from the code"
    reference = actions.add_parser("reference", help=about, description=about)
    reference.add_argument(
        "--output", metavar="FILE", help="write it to FILE (docs/lab-file.md) instead of stdout"
    )
    reference.set_defaults(handler=run_reference)


def run_check(args: argparse.Namespace) -> int:
    args.path = lab_file(args.path)
    try:
        loaded = load_config_with_marks(args.path)
    except ConfigError as exc:
        report_config_error(args.path, exc)
        return 2
    print(summary(loaded.config, loaded.files))
    return 0


def run_show(args: argparse.Namespace) -> int:
    args.path = lab_file(args.path)
    try:
        loaded = load_config_with_marks(args.path)
    except ConfigError as exc:
        report_config_error(args.path, exc)
        return 2
    print(f"# resolved from: {', '.join(loaded.files)}")
    print(yaml.safe_dump(loaded.tree.to_data(), sort_keys=False, allow_unicode=True), end="")
    return 0


def run_reference(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ionpilot.reference import lab_file_reference

    text = lab_file_reference()
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


def summary(config: LabConfig, files: tuple[str, ...]) -> str:
    """One screen: what this lab contains and what would start."""
    lines = [f"lab {config.lab.name}: OK ({len(files)} file{'s' if len(files) != 1 else ''})"]
    if config.lab.description:
        lines.append(f"  {config.lab.description}")
    bus = config.bus
    lines.append(
        f"bus: publish tcp://{bus.host}:{bus.publish_port}, subscribe tcp://{bus.host}:{bus.subscribe_port}"
    )
    procs = ", ".join(f"{n} (:{p.command_port})" for n, p in config.processes.items())
    lines.append(f"processes: {procs or 'none'}")
    lines.append(f"instruments ({len(config.instruments)}):")
    for name, inst in config.instruments.items():
        extras = []
        if inst.limits:
            extras.append(f"{len(inst.limits)} limit{'s' if len(inst.limits) != 1 else ''}")
        if inst.poll:
            fastest = min(inst.poll.values())
            extras.append(f"{len(inst.poll)} polled (fastest {format_quantity(fastest, 's')})")
        if not inst.enabled:
            extras.append("disabled")
        lines.append(f"  {name:<14} {inst.model:<16} {inst.address:<36} {', '.join(extras)}")
    lock = config.servo.clock_lock
    probe = lock.probe_time if lock.interrogation == "rabi" else lock.ramsey_dark_time
    lines.append(
        f"clock lock: {lock.interrogation} {format_quantity(probe, 's')}, {lock.probes_per_side} probes/side, "
        f"gain {lock.gain:g}, {lock.servo_order}-order servo"
    )
    aux = ", ".join(f"{n} ({a.laser})" for n, a in config.servo.aux_locks.items())
    lines.append(f"auxiliary locks: {aux or 'none'}")
    lines.append(f"health rules: {len(config.health.rules)} signals")
    lines.append(f"recovery playbooks: {', '.join(config.recovery.playbooks) or 'defaults'}")
    lines.append(f"sequencer device: {device_summary(config)}")
    return "\n".join(lines)


def device_summary(config: LabConfig) -> str:
    device = config.device
    parts = []
    for attr in ("num_ions", "ions", "qubit_count", "num_qubits"):
        if hasattr(device, attr):
            parts.append(f"{getattr(device, attr)} ions")
            break
    gates = getattr(device, "native_gates", None)
    if gates:
        parts.append(f"native gates {', '.join(str(g) for g in gates)}")
    return ", ".join(parts) or type(device).__name__
