"""`ionpilot experiment NAME [--setting value ...] [--config LAB] [--json]`: run a standard
experiment on the live lab with a progress line (points done, rate, time left) and print its
fit; the dataset goes to the lab's data_dir (a QCoDeS database) with a PNG beside it."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

from ionpilot.config import DEFAULT_CONFIG
from ionpilot.runtime import load_or_report


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "experiment", help="run a standard experiment (scan, dataset, fit, plot)"
    )
    parser.add_argument(
        "name", help="the experiment: micromotion, rabi, clock-line, ramsey, ms-gate, cooling-scan"
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    parser.add_argument("--json", action="store_true", help="the result as JSON")
    parser.add_argument("settings", nargs=argparse.REMAINDER, help="--setting value ...")
    parser.set_defaults(handler=run)


def settings_parser(name: str, fields: list[Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"ionpilot experiment {name}", add_help=False)
    parser.add_argument("--config", default=None)  # also accepted after the settings
    parser.add_argument("--json", action="store_true")
    for f in fields:
        parser.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
    return parser


class ProgressLine:
    """`point 3/9  1.8 pt/s  ~3 s left` on stderr, rewritten in place."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = done / elapsed
        left = (total - done) / rate if rate > 0 else float("nan")
        end = "\n" if done == total else ""
        print(
            f"\rpoint {done}/{total}  {rate:.2f} pt/s  ~{left:.0f} s left ",
            end=end,
            file=sys.stderr,
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    from ionpilot.bus.codec import BusError
    from ionpilot.experiments.clock_laser import ClockLaserRefused
    from ionpilot.experiments.micromotion import ElectrodeNotSettled
    from ionpilot.experiments.pulses import JobFailed
    from ionpilot.experiments.registry import EXPERIMENTS
    from ionpilot.script import connect

    experiment = EXPERIMENTS.get(args.name)
    if experiment is None:
        print(
            f"error: no experiment {args.name!r}; there is: {', '.join(sorted(EXPERIMENTS))}",
            file=sys.stderr,
        )
        return 2
    fields = experiment.fields()
    try:
        values = settings_parser(args.name, fields).parse_args(args.settings)
    except SystemExit:  # argparse has said what was wrong
        known = ", ".join(f"--{f.name} (default {f.default})" for f in fields)
        print(f"settings of {args.name}: {known}", file=sys.stderr)
        return 2
    chosen = vars(values)
    args.config = chosen.pop("config") or args.config
    args.json = chosen.pop("json") or args.json
    settings = experiment.settings(**chosen)
    try:
        settings.check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = load_or_report(args.config)
    if config is None:
        return 2
    with connect(args.config, name="experiment") as lab:
        try:
            with contextlib.redirect_stdout(sys.stderr):  # QCoDeS's own lines: not the result
                result = experiment.run(lab, settings, ProgressLine())
        except BusError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        except ValueError as exc:  # a setting the lab cannot play (said before anything ran)
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (ClockLaserRefused, JobFailed, ElectrodeNotSettled) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if result["fit"]["converged"] else 1
    fit = result["fit"]
    print(f"{result['experiment']}: run {result['run_id']} in {result['database']}")
    if fit["converged"]:
        for key, value in fit["values"].items():
            print(f"  {key} = {value:.6g} ± {fit['errors'][key]:.2g}")
    else:
        print(f"  {fit['message']} (the data are stored)")
    print(f"  plot: {result['png']}")
    return 0 if fit["converged"] else 1
