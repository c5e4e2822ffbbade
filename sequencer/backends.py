"""Backends run validated pulse schedules. `Backend` is the seam: the simulated chain implements
it now; the trap backend (the pulse controller's driver on the bus) slots in behind it."""

from __future__ import annotations

from typing import Protocol

from ionpilot.sequencer.errors import BackendUnavailable, SequencerError
from ionpilot.sequencer.schedule import Schedule
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.simulator import SimulatedChain, SimulationResult

BACKEND_NAMES = ("sim", "trap")


class Backend(Protocol):
    """Something that runs a schedule for a number of shots and returns counts."""

    name: str

    def run(self, schedule: Schedule, shots: int, seed: int | None = None) -> SimulationResult:
        """Validate and execute `schedule`; raise before anything plays if it is invalid."""
        ...


class TrapBackend:
    """The real (or simulated-lab) pulse controller, reached through its driver on the bus."""

    name = "trap"

    def __init__(self, device: DeviceSettings) -> None:
        self.device = device

    def run(self, schedule: Schedule, shots: int, seed: int | None = None) -> SimulationResult:
        """Not available until the pulse-controller driver and the sequencer service exist."""
        raise BackendUnavailable(
            "the trap backend needs the pulse-controller driver on the bus "
            "(start the system with `ionpilot up`); it is not running"
        )


def get_backend(name: str, device: DeviceSettings, ideal: bool = False) -> Backend:
    """The backend called `name` for `device`."""
    if name == "sim":
        return SimulatedChain(device, ideal=ideal)
    if name == "trap":
        return TrapBackend(device)
    raise SequencerError(f"unknown backend '{name}' (choose from {', '.join(BACKEND_NAMES)})")
