"""`ionpilot adev SERIES --since 24h [--every T] [--plot FILE] [--json]`: the overlapping Allan
deviation of a stored frequency record (allantools), with 68 % confidence intervals.

The record is put on an even grid of `--every` (default: the median spacing of its samples) by
averaging the samples in each bucket; buckets with no sample are dropped and counted (a lock that
paused), and fractional frequency is taken against ν₀ of the lab file for the clock's optical
frequencies, else against the record's own mean.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from ionpilot.commands.history import (
    CLOCK_FREQUENCIES,
    add_range_arguments,
    request_range,
    save_figure,
)

MIN_POINTS = 8


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("adev", help="Allan deviation of a stored frequency record")
    add_range_arguments(parser, "24h")
    parser.add_argument("--plot", metavar="FILE.png", default=None, help="draw σ_y(τ)")
    parser.add_argument("--json", action="store_true", help="taus, deviations, intervals as JSON")
    parser.set_defaults(handler=run)


def even_grid(
    t_ns: npt.NDArray[np.int64], values: npt.NDArray[np.float64], every_s: float | None
) -> tuple[npt.NDArray[np.float64], float, int]:
    """Bucket means on an even grid of `every_s` (default: median spacing); (means, tau0 in s,
    empty buckets dropped)."""
    if every_s is None:
        every_s = float(np.median(np.diff(t_ns))) / 1e9
    step = max(1, round(every_s * 1e9))
    index = (t_ns - t_ns[0]) // step
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index)
    keep = counts > 0
    return sums[keep] / counts[keep], step / 1e9, int(np.count_nonzero(~keep))


def allan(y: npt.NDArray[np.float64], tau0: float) -> list[dict[str, float]]:
    """Overlapping ADEV at octave taus with 1-σ (68.3 %) intervals (white-FM degrees of
    freedom, Stein's simple formula)."""
    import allantools

    taus, devs, errs, ns = allantools.oadev(y, rate=1.0 / tau0, data_type="freq", taus="octave")
    out = []
    for tau, dev, err, n in zip(taus, devs, errs, ns, strict=True):
        m = max(1, round(tau / tau0))
        edf = allantools.edf_simple(len(y) + 1, m, 0)
        lo, hi = allantools.confidence_interval(dev, edf)
        out.append(
            {
                "tau_s": float(tau),
                "adev": float(dev),
                "ci_low": float(lo),
                "ci_high": float(hi),
                "error": float(err),
                "n": int(n),
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    got = request_range(args, raw=args.every is None)
    if isinstance(got, int):
        return got
    config, result = got
    pairs = [
        (t, v)
        for t, v in zip(result["t_ns"], result["value"], strict=True)
        if isinstance(v, int | float) and math.isfinite(v)
    ]
    if len(pairs) < MIN_POINTS:
        print(
            f"error: {result['series']} has {len(pairs)} numeric points in the range; the "
            f"Allan deviation needs at least {MIN_POINTS}",
            file=sys.stderr,
        )
        return 1
    t = np.array([p[0] for p in pairs], dtype=np.int64)
    f = np.array([p[1] for p in pairs], dtype=float)
    means, tau0, empty = even_grid(t, f, result.get("every_s"))
    nominal = (
        config.servo.clock_lock.clock_frequency
        if result["series"] in CLOCK_FREQUENCIES
        else float(np.mean(means))
    )
    if nominal == 0:
        print("error: the record's mean is 0: no fractional frequency", file=sys.stderr)
        return 1
    y = (means - np.mean(means)) / nominal
    rows = allan(y, tau0)
    if args.json:
        json.dump(
            {
                "series": result["series"],
                "unit": result.get("unit"),
                "tau0_s": tau0,
                "points": len(means),
                "empty_buckets": empty,
                "nominal_hz": nominal,
                "adev": rows,
            },
            sys.stdout,
        )
        sys.stdout.write("\n")
    else:
        print(
            f"{result['series']}: {len(means)} points, tau0 {tau0:g} s, {empty} empty buckets "
            f"dropped, fractional against {nominal:.6g}"
        )
        print(f"{'tau (s)':>12} {'adev':>12} {'68% low':>12} {'68% high':>12} {'n':>8}")
        for r in rows:
            print(
                f"{r['tau_s']:12.4g} {r['adev']:12.4e} {r['ci_low']:12.4e} "
                f"{r['ci_high']:12.4e} {r['n']:8d}"
            )
    if args.plot:
        return _plot(rows, result["series"], args.plot)
    return 0


def _plot(rows: list[dict[str, float]], series: str, path: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = np.array([r["tau_s"] for r in rows])
    dev = np.array([r["adev"] for r in rows])
    lo = dev - np.array([r["ci_low"] for r in rows])
    hi = np.array([r["ci_high"] for r in rows]) - dev
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    ax.errorbar(taus, dev, yerr=[lo, hi], fmt="o-", capsize=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("τ (s)")
    ax.set_ylabel("σ_y(τ)")
    ax.set_title(f"Allan deviation of {series} (68 % intervals)")
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path, f"{len(rows)} taus")
