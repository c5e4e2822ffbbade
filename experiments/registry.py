"""The standard experiments by name, with their settings as command-line options."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ionpilot.experiments.micromotion import MicromotionSettings, micromotion

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
}
