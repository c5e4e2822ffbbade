"""Apply a lab config's safety limits to a driver instance: narrow only, never widen.

A QCoDeS station `limits:` entry *replaces* a parameter's validator and can therefore widen it;
ours intersect with the hardware range (from `hardware.py`) inside each `GuardedParameter`, so
no public parameter API (set, call, ramp steps, set_raw, channel lists, `vals = ...`) gets past
them. A limit wider than the hardware range is a configuration error, raised when applied.

Keys: a parameter name (`voltage`) applies to that parameter on the instrument and on every
channel; `ch05.voltage` (any zero padding) to one channel. Values are SI floats, given as a
mapping `{min, max}` (either side may be omitted), an object with `min`/`max` attributes, or a
`(min, max)` pair.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ionpilot.drivers.base import GuardedParameter, IonpilotDriver
from ionpilot.drivers.errors import LimitsConfigError

_CHANNEL_KEY = re.compile(r"^ch(\d+)\.(\w+)$")


def limit_bounds(spec: Any) -> tuple[float | None, float | None]:
    """(min, max) of one limit entry, None where a side is not given."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"min", "max"}
        if unknown:
            raise LimitsConfigError(f"limit has unknown keys {sorted(unknown)}")
        lo, hi = spec.get("min"), spec.get("max")
    elif isinstance(spec, tuple | list) and len(spec) == 2:
        lo, hi = spec
    elif hasattr(spec, "min") or hasattr(spec, "max"):
        lo, hi = getattr(spec, "min", None), getattr(spec, "max", None)
    else:
        raise LimitsConfigError(f"limit {spec!r} is not {{min, max}}")
    return _number_or_none(lo), _number_or_none(hi)


def _number_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LimitsConfigError(f"limit bound {value!r} is not a number (SI float expected)")
    return float(value)


def resolve_limit_targets(instrument: IonpilotDriver, key: str) -> list[GuardedParameter]:
    """The guarded parameters one limit key refers to; LimitsConfigError if none."""
    guarded = instrument.guarded_parameters()
    match = _CHANNEL_KEY.match(key)
    if match is not None:
        number, name = int(match.group(1)), match.group(2)
        for module in instrument.channel_modules():
            if int(module.channel_number) == number:
                param = module.parameters.get(name)
                if isinstance(param, GuardedParameter):
                    return [param]
        raise LimitsConfigError(f"{instrument.name}: no settable channel parameter {key!r}")
    targets = [param for path, param in guarded.items() if path.rsplit(".", 1)[-1] == key]
    if not targets:
        settable = sorted({path.rsplit(".", 1)[-1] for path in guarded})
        raise LimitsConfigError(
            f"{instrument.name}: {key!r} is not a settable parameter (have {settable})"
        )
    return targets


def apply_limits(instrument: IonpilotDriver, limits: Mapping[str, Any]) -> None:
    """Narrow the instrument's set-point ranges by the configured limits, all or nothing.

    Raises LimitsConfigError (nothing applied) if any key names no settable parameter, any
    limit is inverted or wider than the hardware range, or an intersection would be empty.
    """
    plan: dict[int, tuple[GuardedParameter, float, float]] = {}
    for key, spec in limits.items():
        lo, hi = limit_bounds(spec)
        for param in resolve_limit_targets(instrument, key):
            hw_lo, hw_hi = param.hardware_range()
            new_lo = hw_lo if lo is None else lo
            new_hi = hw_hi if hi is None else hi
            _check_within_hardware(param, new_lo, new_hi)
            _, cur_lo, cur_hi = plan.get(id(param), (param, *param.allowed_range()))
            merged = (max(cur_lo, new_lo), min(cur_hi, new_hi))
            if merged[0] > merged[1]:
                raise LimitsConfigError(
                    f"{param.full_name}: limits for {key!r} leave nothing allowed "
                    f"(within [{cur_lo:g}, {cur_hi:g}] {param.unit})"
                )
            plan[id(param)] = (param, *merged)
    for param, lo_, hi_ in plan.values():
        param.narrow_limits(lo_, hi_)


def _check_within_hardware(param: GuardedParameter, lo: float, hi: float) -> None:
    """Same rule narrow_limits enforces, checked up front so a bad config applies nothing."""
    hw_lo, hw_hi = param.hardware_range()
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise LimitsConfigError(f"{param.full_name}: limit [{lo:g}, {hi:g}] is not a range")
    slack = 1e-9 * max(abs(hw_lo), abs(hw_hi), 1e-300)
    if lo < hw_lo - slack or hi > hw_hi + slack:
        raise LimitsConfigError(
            f"{param.full_name}: limit [{lo:g}, {hi:g}] {param.unit} is wider than the "
            f"hardware range [{hw_lo:g}, {hw_hi:g}] {param.unit}"
        )
