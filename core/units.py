"""Physical quantities written the way physicists write them in a lab file: "25 MHz", "80 ms", "2.5 V/s".

Only units ionpilot uses are known; anything else is an error that says what is allowed, never a guess.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Base units and the dimension each one measures. dBm and dB are logarithmic: no prefixes.
BASE_UNITS: dict[str, str] = {
    "Hz": "frequency",
    "s": "time",
    "V": "voltage",
    "A": "current",
    "W": "power",
    "m": "length",
    "K": "temperature",
    "dBm": "RF power",
    "dB": "ratio",
    "rad": "angle",
    "1": "count",
}
NO_PREFIX = frozenset({"dBm", "dB", "1"})
# Time units that are not SI-prefixed seconds but are how long runs are written.
TIME_ALIASES: dict[str, float] = {"min": 60.0, "h": 3600.0, "d": 86400.0}
PREFIXES: dict[str, float] = {
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "µ": 1e-6,
    "μ": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# the unit: a name ('MHz', 'V/s'), or a rate written '1/s' (a unit may not start with a digit
# otherwise: '5 2' is not a quantity)
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([^\s\d.+-][^\s]*|1/[^\s]+)?\s*$")


class UnitError(ValueError):
    """A quantity whose number or unit cannot be read, or whose unit measures the wrong thing."""


@dataclass(frozen=True)
class Quantity:
    """A value in SI base units together with the base unit it is expressed in."""

    value: float
    unit: str
    text: str = ""

    def __str__(self) -> str:
        return self.text or format_quantity(self.value, self.unit)


def _parse_simple_unit(token: str) -> tuple[float, str]:
    """'mA' -> (1e-3, 'A'); 'h' -> (3600, 's'). Raises UnitError."""
    if token in BASE_UNITS:
        return 1.0, token
    if token in TIME_ALIASES:
        return TIME_ALIASES[token], "s"
    prefix, rest = token[:1], token[1:]
    if prefix in PREFIXES and rest in BASE_UNITS and rest not in NO_PREFIX:
        return PREFIXES[prefix], rest
    raise UnitError(f"unknown unit '{token}' (known: {', '.join(known_units())})")


def parse_unit(unit: str) -> tuple[float, str]:
    """A unit expression ('MHz', 'V/s', 'mV/MHz', '1/s') to (scale to SI, SI unit)."""
    unit = unit.strip()
    if not unit:
        return 1.0, ""
    if unit.count("/") > 1:
        raise UnitError(f"unit '{unit}' has more than one '/'")
    if "/" in unit:
        top, bottom = unit.split("/")
        top_scale, top_unit = _parse_simple_unit(top)
        bottom_scale, bottom_unit = _parse_simple_unit(bottom)
        return top_scale / bottom_scale, f"{top_unit}/{bottom_unit}"
    return _parse_simple_unit(unit)


def known_units() -> list[str]:
    return [u for u in BASE_UNITS if u != "1"] + list(TIME_ALIASES)


def parse_quantity(text: str, expected_unit: str | None = None) -> Quantity:
    """Parse "25 MHz" to Quantity(25e6, "Hz"); check its dimension against expected_unit if given."""
    match = _QUANTITY.match(text)
    if match is None:
        raise UnitError(f"'{text}' is not a number followed by a unit (e.g. '25 MHz')")
    number, unit_text = match.group(1), match.group(2) or ""
    scale, si_unit = parse_unit(unit_text)
    value = float(number) * scale
    if not math.isfinite(value):
        raise UnitError(f"'{text}' is not a finite number")
    if expected_unit is not None and si_unit != expected_unit:
        if not unit_text:
            raise UnitError(
                f"'{text}' has no unit; write it with one, e.g. '{number} {expected_unit}'"
            )
        raise UnitError(
            f"unit '{unit_text}' measures {describe_unit(si_unit)}, "
            f"but this needs {describe_unit(expected_unit)} ({expected_unit})"
        )
    return Quantity(value, si_unit, text.strip())


def describe_unit(si_unit: str) -> str:
    if not si_unit:
        return "a plain number"
    if "/" in si_unit:
        top, bottom = si_unit.split("/")
        return f"{BASE_UNITS.get(top, top)} per {BASE_UNITS.get(bottom, bottom)}"
    return BASE_UNITS.get(si_unit, si_unit)


def format_quantity(value: float, unit: str) -> str:
    """Human form with an engineering prefix: 2.5e7 Hz -> '25 MHz'."""
    if unit in NO_PREFIX or "/" in unit or not unit or value == 0:
        return f"{value:g} {unit}".strip()
    exponent = int(math.floor(math.log10(abs(value)) / 3) * 3)
    exponent = max(-12, min(12, exponent))
    prefix = {-12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T"}[exponent]
    return f"{value / 10**exponent:g} {prefix}{unit}"


_SUFFIX_UNITS = (  # the servo's record fields name their unit last: `error_hz`, `drift_hz_per_s`
    ("_hz_per_s", "Hz/s"),
    ("_hz", "Hz"),
    ("_s", "s"),
    ("_v", "V"),
    ("_a", "A"),
    ("_dbm", "dBm"),
    ("_rad", "rad"),
)


def unit_of_field(name: str) -> str:
    """The unit a record field's name ends in (`error_hz` is in Hz); "" if none."""
    for suffix, unit in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    return ""
