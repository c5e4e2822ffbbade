"""`ionpilot history SERIES --since 1h [--until T] [--every 1min] [--json|--csv|--plot FILE]`:
what the recorder kept of one series, at a resolution chosen from its tiers.

`--csv` of the clock's output frequency is its frequency record for comparisons: MJD and UTC
per point, the frequency, its fractional offset from the nominal clock frequency ν₀ of the lab
file, and the lock state then.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from typing import Any

from ionpilot.config import DEFAULT_CONFIG, LabConfig
from ionpilot.runtime import load_or_report

PING_S = 1.5  # how long to wait for the recorder's first answer (a ping is answered inline)
# Series whose values are the clock's optical frequency: their CSV has a fractional offset.
CLOCK_FREQUENCIES = (
    "servo.clock.output_frequency",
    "servo.clock.optical_frequency.output_frequency_hz",
    "servo.clock.optical_frequency.laser_frequency_hz",
)


def add_range_arguments(parser: argparse.ArgumentParser, since: str) -> None:
    parser.add_argument("series", help="TOPIC or TOPIC.FIELD, e.g. servo.clock.output_frequency")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    parser.add_argument("--since", default=since, help="1h, 5min, 2d back, or an ISO UTC time")
    parser.add_argument("--until", default="now", help="as --since (default: now)")
    parser.add_argument("--every", default=None, help="bucket width: 10s, 1min, 1h")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("history", help="stored history of one series (the recorder)")
    add_range_arguments(parser, "1h")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the points as JSON")
    out.add_argument("--csv", action="store_true", help="MJD, UTC, value(s), lock state")
    out.add_argument("--plot", metavar="FILE.png", default=None, help="draw the series")
    out.add_argument(
        "--gaps", action="store_true", help="the recorded gaps of its topic (and the recorder's)"
    )
    parser.set_defaults(handler=run)


def request_range(
    args: argparse.Namespace, *, raw: bool = False
) -> tuple[LabConfig, dict[str, Any]] | int:
    """Load the lab file and fetch the series; an exit code (message printed) on failure."""
    from ionpilot.bus.codec import BusError, ErrorCode
    from ionpilot.recorder.client import fetch_history, parse_every, parse_when
    from ionpilot.script import connect

    config = load_or_report(args.config)
    if config is None:
        return 2
    now = time.time_ns()
    try:
        since = parse_when(args.since, now)
        until = parse_when(args.until, now)
        every = parse_every(args.every) if args.every is not None else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if until <= since:
        print(
            f"error: --until ({args.until}) must be later than --since ({args.since})",
            file=sys.stderr,
        )
        return 2
    if "recorder" not in config.processes:
        print("error: the lab file has no recorder process (processes: recorder)", file=sys.stderr)
        return 2
    with connect(config, name="history") as lab:
        try:
            lab.call("recorder", "ping", timeout=PING_S)  # a quick "is it there" first
            result = fetch_history(lab.call, args.series, since, until, every, raw=raw)
        except BusError as exc:
            if exc.code == ErrorCode.TIMEOUT:
                print(
                    "error: the recorder does not answer; is `ionpilot up` (or `ionpilot "
                    f"recorder --config {args.config}`) running?",
                    file=sys.stderr,
                )
                return 1
            print(f"error: {exc.message}", file=sys.stderr)
            return 2 if exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_TARGET) else 1
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return config, result


def run(args: argparse.Namespace) -> int:
    if args.gaps:
        return show_gaps(args)
    got = request_range(args)
    if isinstance(got, int):
        return got
    config, result = got
    if args.json:
        json.dump(result, sys.stdout, allow_nan=True)
        sys.stdout.write("\n")
        return 0
    if args.csv:
        write_csv(result, config.servo.clock_lock.clock_frequency)
        return 0
    if args.plot:
        return plot(result, args.plot)
    print_table(result)
    return 0


def show_gaps(args: argparse.Namespace) -> int:
    """Gaps of the series' topic in the range: the numbers missed and the span, one a line."""
    from ionpilot.bus.codec import BusError
    from ionpilot.recorder.client import parse_when, utc_text
    from ionpilot.script import connect

    config = load_or_report(args.config)
    if config is None:
        return 2
    now = time.time_ns()
    try:
        since, until = parse_when(args.since, now), parse_when(args.until, now)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    topics = {args.series, args.series.rpartition(".")[0]}
    with connect(config, name="history") as lab:
        try:
            gaps = lab.call(
                "recorder",
                "get",
                {"name": "gaps", "since_ns": since, "until_ns": until},
                timeout=10.0,
            )
        except BusError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    shown = 0
    for topic, src, first, last, start, end, reason in gaps:
        if topic is not None and topic not in topics:
            continue
        what = "recorder away" if topic is None else f"{topic} from {src}: seq {first}-{last}"
        print(
            f"{utc_text(start)} .. {utc_text(end)}  {(end - start) / 1e9:9.3f} s  {reason}  {what}"
        )
        shown += 1
    print(f"{shown} gap(s)")
    return 0


def write_csv(result: dict[str, Any], clock_frequency_hz: float) -> None:
    from ionpilot.recorder.client import mjd, utc_text

    unit = result.get("unit") or ""
    clock = result["series"] in CLOCK_FREQUENCIES
    name = "frequency" if clock else "value"
    suffix = f"_{unit.lower().replace('/', '_per_')}" if unit else ""
    header = ["mjd", "utc", f"{name}{suffix}"]
    extra = [k for k in ("min", "max", "count") if k in result]
    header += [f"{k}{suffix}" if k != "count" else k for k in extra]
    if clock:
        header.append("fractional_offset")
    states = result.get("lock_state")
    if states is not None:
        header.append("lock_state")
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    for i, t in enumerate(result["t_ns"]):
        value = result["value"][i]
        row: list[Any] = [f"{mjd(t):.9f}", utc_text(t), _num(value)]
        row += [_num(result[k][i]) for k in extra]
        if clock:
            row.append(
                "" if value is None else f"{(value - clock_frequency_hz) / clock_frequency_hz:.6e}"
            )
        if states is not None:
            row.append(states[i])
        writer.writerow(row)


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def print_table(result: dict[str, Any]) -> None:
    from ionpilot.recorder.client import utc_text

    unit = result.get("unit") or ""
    every = result.get("every_s")
    resolution = "every sample" if every is None else f"{every:g} s buckets"
    print(
        f"{result['series']} [{unit or '-'}] from {result['tier']} ({resolution}), "
        f"{len(result['t_ns'])} points"
    )
    states = result.get("lock_state")
    for i, t in enumerate(result["t_ns"]):
        line = f"{utc_text(t)}  {_num(result['value'][i]):>24}"
        if "min" in result:
            line += f"  min {_num(result['min'][i])}  max {_num(result['max'][i])}"
            line += f"  n {result['count'][i]}"
        if states is not None:
            line += f"  {states[i]}"
        print(line)


def plot(result: dict[str, Any], path: str) -> int:
    """The series against UTC time (min-max band for aggregates) into a PNG."""
    import datetime as dt

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    times: Any = [dt.datetime.fromtimestamp(t / 1e9, tz=dt.UTC) for t in result["t_ns"]]
    values = np.array([np.nan if v is None else v for v in result["value"]], dtype=float)
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    if "min" in result:
        lo = np.array([np.nan if v is None else v for v in result["min"]], dtype=float)
        hi = np.array([np.nan if v is None else v for v in result["max"]], dtype=float)
        ax.fill_between(times, lo, hi, alpha=0.3, label="min-max")
    ax.plot(times, values, lw=1, label="mean" if "min" in result else result["series"])
    ax.set_xlabel("UTC")
    unit = result.get("unit") or ""
    ax.set_ylabel(f"{result['series']}" + (f" ({unit})" if unit else ""))
    ax.set_title(f"{result['series']}: {len(times)} points from {result['tier']}")
    ax.legend(loc="best")
    fig.autofmt_xdate()
    return save_figure(fig, path, f"{len(times)} points of {result['series']}")


def save_figure(fig: Any, path: str, what: str) -> int:
    """Write a finished figure to `path` (exit code: 1 when it cannot be written) and say so."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        print(f"error: cannot write {path}: {exc}", file=sys.stderr)
        return 1
    finally:
        plt.close(fig)
    print(f"{path}: {what}")
    return 0
