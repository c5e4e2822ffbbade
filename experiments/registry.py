"""The standard experiments by name, with their settings as command-line options."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ionpilot.experiments.clock import (
    ClockLineSettings,
    RabiSettings,
    RamseySettings,
    clock_line,
    rabi,
    ramsey,
)
from ionpilot.experiments.cooling import CoolingScanSettings, cooling_scan
from ionpilot.experiments.loading import LoadingCurveSettings, loading_curve
from ionpilot.experiments.micromotion import MicromotionSettings, micromotion
from ionpilot.experiments.ms_gate import MsGateSettings, ms_gate

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = ["EXPERIMENTS", "Experiment"]


@dataclass(frozen=True)
class Experiment:
    summary: str
    settings: type[Any]  # a frozen dataclass of plain fields with defaults, and `check()`
    run: Callable[[Lab, Any, Callable[[int, int], None] | None], dict[str, Any]]

    def fields(self) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(self.settings))


EXPERIMENTS: dict[str, Experiment] = {
    "micromotion": Experiment(
        "DC electrode voltage of least micromotion (fluorescence maximum, parabola fit)",
        MicromotionSettings,
        micromotion,
    ),
    "rabi": Experiment(
        "Rabi flopping on the clock line (π time at an amplitude; recorded as pi_time)",
        RabiSettings,
        rabi,
    ),
    "clock-line": Experiment(
        "clock line scan with a π pulse (centre on the AOM and optical, width)",
        ClockLineSettings,
        clock_line,
    ),
    "ramsey": Experiment(
        "Ramsey fringes on the clock line (detuning, T2*)",
        RamseySettings,
        ramsey,
    ),
    "cooling-scan": Experiment(
        "cooling-laser detuning scan, red side (resonance, the lock target's detuning, width)",
        CoolingScanSettings,
        cooling_scan,
    ),
    "ms-gate": Experiment(
        "MS gate: Bell-state populations and parity oscillation (fidelity; ms_fidelity)",
        MsGateSettings,
        ms_gate,
    ),
    "loading-curve": Experiment(
        "oven current -> time to load the whole chain (exponential fit; load_time at the reload current)",
        LoadingCurveSettings,
        loading_curve,
    ),
}
