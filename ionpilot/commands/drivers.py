"""`ionpilot drivers --config PATH [--only NAMES]`: the driver host process."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Literal

from ionpilot.config import LabConfig
from ionpilot.labfile import add_config_option, lab_file
from ionpilot.runtime import load_or_report, run_service


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "drivers", help="run a driver host: own instruments, poll them, serve them on the bus"
    )
    add_config_option(parser)
    parser.add_argument(
        "--only", default="", help="comma-separated instrument names (default: all of this host)"
    )
    parser.add_argument(
        "--process", default="drivers", help="which host process of the lab file this is"
    )
    parser.add_argument(
        "--cpu",
        default="auto",
        help="the one CPU the host's Python threads run on: a number, 'auto' (the last one) or "
        "'none' (no pinning)",
    )
    parser.set_defaults(handler=run)


def parse_cpu(text: str) -> int | Literal["auto"] | None:
    """`--cpu`: 'auto', 'none' or a CPU number."""
    if text == "auto":
        return "auto"
    if text == "none":
        return None
    if not text.isdigit():
        raise ValueError(f"--cpu takes a CPU number, 'auto' or 'none', not {text!r}")
    return int(text)


def host_specs(config: LabConfig, process: str, only: list[str]) -> list[Any]:
    from ionpilot.drivers.host import InstrumentSpec

    unknown = [n for n in only if n not in config.instruments]
    if unknown:
        raise ValueError(
            f"--only names unknown instruments: {', '.join(unknown)}; "
            f"instruments: {', '.join(config.instruments)}"
        )
    return [
        InstrumentSpec(
            name=name,
            model=inst.model,
            address=inst.address,
            timeout_s=inst.timeout,
            limits=inst.limit_values(),
            poll=dict(inst.poll),
        )
        for name, inst in config.instruments.items()
        if inst.enabled and inst.host == process and (not only or name in only)
    ]


def run(args: argparse.Namespace) -> int:
    args.config = lab_file(args.config)
    config = load_or_report(args.config)
    if config is None:
        return 2
    if args.process not in config.processes:
        print(
            f"error: --process {args.process!r} is not a process of the lab file; "
            f"processes: {', '.join(config.processes)}",
            file=sys.stderr,
        )
        return 2
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    from ionpilot.drivers.host import DriverHost, host_cpu, open_spec

    try:
        specs = host_specs(config, args.process, only)
        cpu = host_cpu(parse_cpu(args.cpu))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(asctime)s drivers %(levelname)s %(message)s")
    process = config.processes[args.process]
    endpoint = f"tcp://{process.host or config.bus.host}:{process.command_port}"
    host = DriverHost(args.process, specs, config.bus, endpoint, open_spec, cpu=cpu)
    names = ", ".join(s.name for s in specs) or "no instruments"
    first_attempt_s = max((s.timeout_s for s in specs), default=0.0) * 2 + 5.0

    metrics: list[Any] = []

    def start() -> None:
        host.start()
        host.wait_first_attempts(first_attempt_s)
        metrics_port = config.metrics.ports.get(args.process)
        if metrics_port:  # Prometheus /metrics: per instrument connected, polls, errors
            from ionpilot.metrics import host_snapshot, serve_metrics

            snapshot = lambda: host_snapshot(host.metrics())  # noqa: E731
            metrics.append(serve_metrics(args.process, snapshot, metrics_port, config.metrics.host))

    def stop() -> None:
        for server in metrics:
            server.shutdown()
        host.stop()

    return run_service(start, stop, f"ready {args.process}: {names}")
