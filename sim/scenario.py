"""Scenario files: a campaign of faults at world times, `- {at: 3600 s, fault: ion_loss}`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .world import World, check_fault

_TIME = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(ms|s|min|h|d)?\s*$")
_SCALE = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


@dataclass(frozen=True)
class ScheduledFault:
    """One line of a scenario."""

    at_s: float
    fault: str
    target: str | None = None


def parse_time(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _TIME.match(str(value))
    if not m:
        raise ValueError(f"cannot read time '{value}' (write e.g. '3600 s', '2 h')")
    return float(m.group(1)) * _SCALE[m.group(2)]


def load_scenario(path: str | Path) -> list[ScheduledFault]:
    """Read and check a scenario file; raises ValueError naming the bad entry."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: a scenario is a list of {{at, fault, target}} entries")
    out = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "at" not in entry or "fault" not in entry:
            raise ValueError(f"{path}: entry {i + 1} needs 'at' and 'fault'")
        target = entry.get("target")
        item = ScheduledFault(
            parse_time(entry["at"]), str(entry["fault"]), None if target is None else str(target)
        )
        try:
            check_fault(item.fault, item.target)
        except ValueError as exc:
            raise ValueError(f"{path}: entry {i + 1}: {exc}") from None
        out.append(item)
    return out


def schedule_scenario(world: World, faults: list[ScheduledFault], offset_s: float = 0.0) -> None:
    for item in faults:
        world.schedule(offset_s + item.at_s, item.fault, item.target)
