"""Results in one JSON shape: counts, probabilities, Wilson intervals, compile report, device.

Bitstring keys follow Qiskit: the last classical bit is leftmost, bit 0 of the first register is
rightmost, and registers are separated by a space (last register leftmost)."""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bitstring(value: int, cregs: list[tuple[str, int]], num_clbits: int) -> str:
    """The Qiskit-style key of a classical-bit value."""
    if not cregs:
        cregs = [("c", num_clbits)] if num_clbits else []
    parts = []
    offset = 0
    for _, size in cregs:
        bits = (value >> offset) & ((1 << size) - 1)
        parts.append(format(bits, f"0{size}b"))
        offset += size
    return " ".join(reversed(parts))


def result_json(
    counts: dict[int, int],
    probabilities: dict[int, float],
    shots: int,
    cregs: list[tuple[str, int]],
    num_clbits: int,
    *,
    exact: bool,
    extra: dict[str, Any] | None = None,
    max_intervals: int = 4096,
) -> dict[str, Any]:
    """The result document (without compile report and device, added by the caller via `extra`)."""
    keyed_counts = {
        bitstring(k, cregs, num_clbits): v for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
    }
    keyed_probs = {
        bitstring(k, cregs, num_clbits): p
        for k, p in sorted(probabilities.items(), key=lambda kv: -kv[1])
    }
    outcomes = list(dict.fromkeys(list(keyed_counts) + list(keyed_probs)))[:max_intervals]
    intervals = {}
    for key in outcomes:
        lo, hi = wilson_interval(keyed_counts.get(key, 0), shots)
        intervals[key] = [lo, hi]
    out: dict[str, Any] = {
        "shots": shots,
        "counts": keyed_counts,
        "probabilities": keyed_probs,
        "probabilities_exact": exact,
        "intervals": intervals,
        "interval_confidence": 0.95,
        "bit_order": "qiskit: bit 0 of the first register rightmost; registers space-separated",
    }
    if extra:
        out.update(extra)
    return out
