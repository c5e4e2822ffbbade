"""`ionpilot logs NAME`: the log of a process `ionpilot up` supervises (<data_dir>/logs)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from ionpilot.config import DEFAULT_CONFIG
from ionpilot.runtime import load_or_report


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("logs", help="show the log of a supervised process")
    parser.add_argument("name", help="process name (hub, recorder, sim, drivers, daemon, ...)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    parser.add_argument("-n", "--lines", type=int, default=50, help="last N lines (0: all)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    if args.lines < 0:
        print(f"error: --lines {args.lines}: 0 (all) or more", file=sys.stderr)
        return 2
    folder = Path(config.lab.data_dir) / "logs"
    path = folder / f"{args.name}.log"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.log")) if folder.is_dir() else []
        where = (
            f"; logs there: {', '.join(known)}" if known else " (no logs yet: run `ionpilot up`)"
        )
        print(f"error: no log for {args.name!r} in {folder}{where}", file=sys.stderr)
        return 2
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = deque(handle, maxlen=args.lines or None)
        sys.stdout.writelines(lines)
        sys.stdout.flush()
        while args.follow:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.25)
    return 0
