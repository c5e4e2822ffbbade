"""`ionpilot recorder --config PATH`: the recorder process (every bus message into the record,
history served on the bus); `ionpilot up` starts and supervises it."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ionpilot.config import DEFAULT_CONFIG
from ionpilot.runtime import load_or_report, run_service


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "recorder", help="record every bus message under data_dir and serve its history"
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    from ionpilot.metrics import recorder_snapshot, serve_metrics
    from ionpilot.recorder.service import PROCESS, Recorder

    if PROCESS not in config.processes:
        print(f"error: the lab file has no process '{PROCESS}' (processes: section)")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s recorder %(levelname)s %(message)s")
    port = config.processes[PROCESS].command_port
    recorder = Recorder(
        config.bus,
        config.recorder,
        config.lab.data_dir,
        command_endpoint=f"tcp://{config.bus.host}:{port}",
    )
    metrics: list[Any] = []

    def start() -> None:
        recorder.start()
        metrics_port = config.metrics.ports.get(PROCESS)
        if metrics_port:
            snapshot = lambda: recorder_snapshot(recorder.status())  # noqa: E731
            metrics.append(serve_metrics(PROCESS, snapshot, metrics_port, config.metrics.host))

    def stop() -> None:
        for server in metrics:
            server.shutdown()
        recorder.stop()

    return run_service(start, stop, f"ready recorder: {recorder.path}")
