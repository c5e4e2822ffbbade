"""Backends run validated pulse schedules. `Backend` is the seam: the simulated chain and the
trap (the lab's pulse controller, through its driver on the bus: `ionpilot.sequencer.trap`)."""

from __future__ import annotations

from typing import Protocol

from ionpilot.sequencer.errors import SequencerError
from ionpilot.sequencer.schedule import Schedule
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.simulator import SimulatedChain, SimulationResult
from ionpilot.sequencer.trap import PulserLink, TrapBackend

BACKEND_NAMES = ("sim", "trap")


class Backend(Protocol):
    """Something that runs a schedule for a number of shots and returns counts."""

    name: str

    def run(self, schedule: Schedule, shots: int, seed: int | None = None) -> SimulationResult:
        """Validate and execute `schedule`; raise before anything plays if it is invalid."""
        ...


def get_backend(
    name: str, device: DeviceSettings, ideal: bool = False, link: PulserLink | None = None
) -> Backend:
    """The backend called `name` for `device`; the trap plays through `link`."""
    if name == "sim":
        return SimulatedChain(device, ideal=ideal)
    if name == "trap":
        return TrapBackend(device, link)
    raise SequencerError(f"unknown backend '{name}' (choose from {', '.join(BACKEND_NAMES)})")
