"""`ionpilot deploy systemd`: the unit files a lab installs on each of its machines.

`ionpilot up` supervises a whole lab on one PC; a lab spread over machines runs each process
under systemd on its own machine instead (restart with back-off, start at boot, logs in the
journal). One unit per process: the command `up` would run for it, the lab file, and the bus
identity (`IONPILOT_IDENTITY`) whose key it uses. The lab's keys must be on that machine under
its data_dir (`keys/`): every `*.key`, the process's own `NAME.key_secret`, and, for the hub
and every process that serves commands, `server.key_secret`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ionpilot.bus.labkeys import IDENTITY_ENV
from ionpilot.config import DEFAULT_CONFIG, LabConfig
from ionpilot.runtime import load_or_report


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("deploy", help="write what a lab installs on its machines")
    kinds = parser.add_subparsers(dest="deploy_kind", metavar="KIND")
    unit = kinds.add_parser("systemd", help="systemd unit files, one per process")
    unit.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    unit.add_argument(
        "--process",
        action="append",
        required=True,
        help="a process of the lab file (hub, sim, drivers, daemon, sequencer, a driver host);"
        " repeat for several",
    )
    unit.add_argument("--output", default=".", help="folder for the unit files (default: .)")
    unit.add_argument("--user", default=None, help="User= of the units (default: none)")
    unit.set_defaults(handler=run)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def process_argv(config_path: str, config: LabConfig, process: str) -> list[str] | None:
    """The command line that runs `process` (as `ionpilot up` runs it); None if unknown."""
    from ionpilot.commands.up import PROCESS_COMMANDS, driver_host_processes

    python = [sys.executable, "-m", "ionpilot.cli"]
    if process == "hub":
        return [*python, "hub", "--config", config_path]
    if process in driver_host_processes(config):
        return [*python, "drivers", "--config", config_path, "--process", process]
    if process in PROCESS_COMMANDS and process in config.processes:
        return [*python, *PROCESS_COMMANDS[process], "--config", config_path]
    return None


def unit_text(config: LabConfig, process: str, argv: list[str], user: str | None) -> str:
    """One systemd service unit."""
    identity = "operator" if process == "hub" else process
    lines = [
        "[Unit]",
        f"Description=ionpilot {config.lab.name}: {process}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={shlex.join(argv)}",
        f"WorkingDirectory={Path.cwd()}",
        f"Environment={IDENTITY_ENV}={identity}",
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=always",
        "RestartSec=2",
        "KillMode=control-group",
        "TimeoutStopSec=20",
        "UMask=0077",
    ]
    if user:
        lines.append(f"User={user}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    config_path = str(Path(args.config).resolve())
    known = ["hub", *config.processes]
    plans: list[tuple[str, list[str]]] = []
    for process in args.process:
        argv = process_argv(config_path, config, process)
        if argv is None:
            print(
                f"error: {process!r} is not a process of {args.config} (known: {', '.join(known)})",
                file=sys.stderr,
            )
            return 2
        plans.append((process, argv))
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    for process, argv in plans:
        path = folder / f"ionpilot-{config.lab.name}-{process}.service"
        path.write_text(unit_text(config, process, argv, args.user))
        print(f"wrote {path}")
    print(
        f"install with: cp *.service /etc/systemd/system/ && systemctl daemon-reload && "
        f"systemctl enable --now ionpilot-{config.lab.name}-<process>; copy the lab's keys "
        f"({Path(config.lab.data_dir) / 'keys'}) to each machine first"
    )
    return 0
