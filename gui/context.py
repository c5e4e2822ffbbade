"""What every panel is handed: the store, the bus link, the settings and facts about the lab."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ionpilot.gui.connection import BusConnection
from ionpilot.gui.settings import GuiSettings
from ionpilot.gui.store import LabStore


@dataclass(frozen=True)
class LabFacts:
    """Plain facts from the lab file, handed over by the CLI (the console imports no config)."""

    name: str = "lab"
    processes: tuple[str, ...] = ()
    simulated: bool = True
    clock_frequency_hz: float = 688_358_979_309_308.0
    qpn_coefficient: float | None = None  # σ_y(τ)·√τ at the projection-noise limit
    update_interval_s: float | None = None  # nominal time between servo updates
    device: Any = None  # the sequencer's DeviceSettings, for local compiles (None: defaults)
    fault_targets: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Context:
    """Shared by the panels of one console window."""

    store: LabStore
    bus: BusConnection
    settings: GuiSettings
    facts: LabFacts
