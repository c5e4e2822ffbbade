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


def parse_events(
    entries: object, where: str, also: frozenset[str] = frozenset()
) -> list[ScheduledFault]:
    """The `{at, fault, target}` entries of a scenario, checked; `also` names fault kinds that
    are not the World's (clock-sim's `driver_crash`, a process fault). ValueError names the bad
    entry."""
    if not isinstance(entries, list):
        raise ValueError(f"{where}: events must be a list of {{at, fault, target}}")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "at" not in entry or "fault" not in entry:
            raise ValueError(f"{where}: entry {i + 1} needs 'at' and 'fault'")
        target = entry.get("target")
        try:
            item = ScheduledFault(
                parse_time(entry["at"]),
                str(entry["fault"]),
                None if target is None else str(target),
            )
            if item.fault not in also:
                check_fault(item.fault, item.target)
        except ValueError as exc:
            raise ValueError(f"{where}: entry {i + 1}: {exc}") from None
        out.append(item)
    return sorted(out, key=lambda f: f.at_s)


def read_scenario(path: str | Path) -> object:
    """The YAML of a scenario file (ValueError if unreadable or not YAML)."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not YAML: {str(exc).splitlines()[0]}") from None


def load_scenario(path: str | Path) -> list[ScheduledFault]:
    """Read and check a scenario file: a list of `{at, fault, target}` events, or a mapping
    with an `events:` list (the format `clock-sim --faults` reads; its periodic keys are
    clock-sim's and refused here). Raises ValueError naming the bad entry."""
    data = read_scenario(path)
    if isinstance(data, dict):
        others = sorted(set(data) - {"events"})
        if others:
            raise ValueError(
                f"{path}: periodic faults ({', '.join(others)}) are for `ionpilot clock-sim "
                "--faults`; a lab scenario takes `events:` only"
            )
        data = data.get("events") or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: a scenario is a list of {{at, fault, target}} entries")
    return parse_events(data, str(path))


def schedule_scenario(world: World, faults: list[ScheduledFault], offset_s: float = 0.0) -> None:
    for item in faults:
        world.schedule(offset_s + item.at_s, item.fault, item.target)
