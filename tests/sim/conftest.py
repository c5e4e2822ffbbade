"""Fixtures of the simulated-lab tests: a lab on free ports, on a virtual clock."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import ClockLaserSettings, SimSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))  # simclients.py
from simclients import CONFIG, lab_instruments

__all__ = ["CONFIG", "lab_instruments"]


def quiet_settings(**changes: object) -> SimSettings:
    """A clock laser without noise or drift, so formulas are exact up to projection noise."""
    laser = ClockLaserSettings(cavity_drift=0.0, flicker_floor=0.0, linewidth=0.0)
    return SimSettings(seed=7, clock_laser=laser, **changes)  # type: ignore[arg-type]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(lab_instruments(), SimSettings(seed=3), free_ports=True) as running:
        yield running


@pytest.fixture
def quiet_lab() -> Iterator[Lab]:
    with Lab(lab_instruments(), quiet_settings(), free_ports=True) as running:
        yield running
