"""The lab's calibration record: what experiments measured about the processor, kept on disk.

Experiments (`ionpilot experiment rabi`, `ms-gate`, ...) write here; the device description
(`ionpilot device --json`) and the sequencer read here. One JSON file under the lab's
`data_dir` (`calibrations.json`), replaced atomically, so a crash never leaves half a record and
a restart loses nothing. Each quantity keeps its latest value with its uncertainty, unit, time
stamp and source (experiment and dataset run id); a quantity older than its validity is stale,
which the device reports as QDMI `NEEDSCALIBRATION`.

Quantities are named in the lab's words; the unit is fixed per quantity (`QUANTITIES`), so a
writer cannot store a π time in microseconds by mistake.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from ionpilot.core.durable import write_atomically

FILE_NAME = "calibrations.json"

# quantity -> (unit, default validity in seconds)
QUANTITIES: dict[str, tuple[str, float]] = {
    "pi_time": ("s", 86_400.0),
    "clock_line_centre": ("Hz", 3_600.0),
    "t2_star": ("s", 86_400.0),
    "ms_detuning": ("Hz", 86_400.0),
    "ms_fidelity": ("", 86_400.0),
    "r_gate_fidelity": ("", 86_400.0),
    "readout_fidelity": ("", 86_400.0),
    "micromotion_compensation": ("V", 86_400.0),
    "cooling_detuning": ("Hz", 86_400.0),
    "load_time": ("s", 604_800.0),
}


class CalibrationError(ValueError):
    """A calibration that cannot be recorded (unknown quantity, wrong unit, impossible value)."""


def validity_table(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Each quantity's validity in seconds: the defaults of `QUANTITIES`, with `overrides` (the
    lab file's `device.calibration_validity`) checked: known quantities, finite, > 0."""
    table = {name: v for name, (_, v) in QUANTITIES.items()}
    for name, seconds in (overrides or {}).items():
        if name not in QUANTITIES:
            raise CalibrationError(
                f"calibration validity for unknown quantity {name!r}; known: {', '.join(QUANTITIES)}"
            )
        if not (math.isfinite(seconds) and seconds > 0):
            raise CalibrationError(f"calibration validity of {name} must be > 0 s, got {seconds}")
        table[name] = float(seconds)
    return table


@dataclass(frozen=True)
class Calibration:
    """One measured quantity: value ± uncertainty [unit], when and by what."""

    quantity: str
    value: float
    uncertainty: float
    unit: str
    measured_s: float  # Unix time of the measurement
    source: str  # e.g. "experiment rabi, run 12"
    validity_s: float

    def stale(self, now_s: float) -> bool:
        return now_s - self.measured_s > self.validity_s

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class CalibrationStore:
    """The calibrations of one lab (`<data_dir>/calibrations.json`)."""

    def __init__(self, data_dir: str | Path, validity_s: Mapping[str, float] | None = None) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self._validity = validity_table(validity_s)

    def record(
        self,
        quantity: str,
        value: float,
        uncertainty: float,
        *,
        unit: str,
        measured_s: float,
        source: str,
    ) -> Calibration:
        """Store the latest value of `quantity` (checked before anything is written)."""
        if quantity not in QUANTITIES:
            raise CalibrationError(
                f"unknown calibration quantity {quantity!r}; known: {', '.join(QUANTITIES)}"
            )
        expected = QUANTITIES[quantity][0]
        if unit != expected:
            raise CalibrationError(f"{quantity} is recorded in {expected!r}, not {unit!r}")
        for what, number in (("value", value), ("uncertainty", uncertainty), ("time", measured_s)):
            if not math.isfinite(number):
                raise CalibrationError(f"{quantity}: {what} must be finite, got {number}")
        if uncertainty < 0:
            raise CalibrationError(f"{quantity}: uncertainty must be >= 0, got {uncertainty}")
        if quantity.endswith("_fidelity") and not (0 <= value <= 1 and uncertainty <= 1):
            raise CalibrationError(
                f"{quantity}: a fidelity is a fraction in [0, 1] with an uncertainty <= 1, got "
                f"{value} +- {uncertainty}"
            )
        cal = Calibration(
            quantity,
            float(value),
            float(uncertainty),
            unit,
            float(measured_s),
            source,
            self._validity[quantity],
        )
        table = self._read_raw()
        table[quantity] = cal.to_json()
        write_atomically(self.path, json.dumps(table, indent=1, sort_keys=True).encode())
        return cal

    def latest(self) -> dict[str, Calibration]:
        """Every recorded quantity's latest calibration (validity as configured now)."""
        found: dict[str, Calibration] = {}
        for name, entry in self._read_raw().items():
            if name not in QUANTITIES or not isinstance(entry, dict):
                continue
            try:
                found[name] = Calibration(
                    name,
                    float(entry["value"]),
                    float(entry["uncertainty"]),
                    str(entry["unit"]),
                    float(entry["measured_s"]),
                    str(entry["source"]),
                    self._validity[name],
                )
            except (KeyError, TypeError, ValueError):
                continue  # a hand-edited entry that does not parse is not a calibration
        return found

    def get(self, quantity: str) -> Calibration | None:
        return self.latest().get(quantity)

    def stale(self, now_s: float) -> list[str]:
        """Quantities recorded but older than their validity."""
        return sorted(name for name, cal in self.latest().items() if cal.stale(now_s))

    def _read_raw(self) -> dict[str, object]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            table = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{self.path}: not a calibration record ({exc})") from exc
        if not isinstance(table, dict):
            raise CalibrationError(f"{self.path}: not a calibration record (not an object)")
        return table
