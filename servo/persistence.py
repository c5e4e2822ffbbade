"""Persisted lock state: written atomically (temporary file, fsync, os.replace, fsync of the
directory) so neither a kill -9 nor a power cut mid-write leaves half a file or loses the
rename, and validated on restore so a stale or corrupt file is refused with a clear message
instead of steering the laser somewhere wrong (the lock then reacquires; start never fails)."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ionpilot.core.durable import temporary_prefix, write_atomically

STATE_VERSION = 1


class StateRestoreError(Exception):
    """The persisted state cannot be used; the message says why. The lock reacquires."""


class StateMissing(StateRestoreError):
    """There is no state file: a fresh lab (or a fresh state directory), not a fault."""


@dataclass(frozen=True)
class ClockLockSnapshot:
    """Everything needed to resume the clock lock: the AOM frequency (the line-centre
    integrator) at a wall-clock reference, and the drift integrator."""

    saved_wall_ns: int
    reference_wall_ns: int  # when aom_frequency_hz was the steer
    aom_frequency_hz: float
    drift_hz_per_s: float
    state: str  # the state when saved
    interrogation: str  # rabi or ramsey, for information
    updates: int
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClockLockSnapshot:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateRestoreError(f"not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise StateRestoreError("not a JSON object")
        if data.get("version") != STATE_VERSION:
            raise StateRestoreError(
                f"version {data.get('version')!r}, this program reads {STATE_VERSION}"
            )
        try:
            snapshot = cls(
                saved_wall_ns=_int(data, "saved_wall_ns"),
                reference_wall_ns=_int(data, "reference_wall_ns"),
                aom_frequency_hz=_float(data, "aom_frequency_hz"),
                drift_hz_per_s=_float(data, "drift_hz_per_s"),
                state=str(data["state"]),
                interrogation=str(data["interrogation"]),
                updates=_int(data, "updates"),
            )
        except KeyError as exc:
            raise StateRestoreError(f"missing field {exc}") from exc
        return snapshot


def _int(data: dict[str, object], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise StateRestoreError(f"field {key!r} must be an integer, found {value!r}")
    return value


def _float(data: dict[str, object], key: str) -> float:
    value = data[key]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise StateRestoreError(f"field {key!r} must be a finite number, found {value!r}")
    return float(value)


class StateStore:
    """One JSON file in a state directory."""

    def __init__(self, directory: str | Path, name: str = "clock_lock.json") -> None:
        self.directory = Path(directory)
        self.path = self.directory / name
        self._swept = False

    def _temporary_files(self) -> list[Path]:
        return list(self.directory.glob(temporary_prefix(self.path) + "*"))

    def _sweep(self) -> None:
        """Remove temporary files a killed process left behind (one per crash mid-write, else
        they pile up over weeks of restarts); only ours, once per process, before the first
        save."""
        self._swept = True
        for stale in self._temporary_files():
            with contextlib.suppress(OSError):
                stale.unlink()

    def save(self, snapshot: ClockLockSnapshot) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._sweep()
        write_atomically(self.path, snapshot.to_json().encode("utf-8"))

    def load(self, now_wall_ns: int, max_age_s: float) -> ClockLockSnapshot:
        """The saved state if it is readable, sane and younger than `max_age_s`."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise StateMissing(f"no saved state at {self.path}") from exc
        except OSError as exc:
            raise StateRestoreError(f"cannot read {self.path}: {exc}") from exc
        try:
            snapshot = ClockLockSnapshot.from_json(text)
        except StateRestoreError as exc:
            raise StateRestoreError(f"{self.path} is corrupt: {exc}") from exc
        age_s = (now_wall_ns - snapshot.saved_wall_ns) / 1e9
        if age_s < -1.0:
            raise StateRestoreError(f"{self.path} was saved {-age_s:.0f} s in the future")
        if age_s > max_age_s:
            raise StateRestoreError(
                f"{self.path} is stale: saved {age_s:.0f} s ago, limit {max_age_s:.0f} s"
            )
        if snapshot.state not in ("locked", "holdover"):
            raise StateRestoreError(f"{self.path} was saved while {snapshot.state}, not locked")
        return snapshot
