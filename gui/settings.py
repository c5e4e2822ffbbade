"""Settings of the operator console (a `gui:` section of the lab file, all optional)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class GuiSettings:
    """How much the console remembers and how often it repaints."""

    history_points: int = 10_000  # samples kept per numeric topic for strip charts
    max_events: int = 5_000  # events kept in the log
    plot_redraw_rate: Annotated[float, "Hz"] = 30.0
    table_refresh_rate: Annotated[float, "Hz"] = 4.0
    describe_period: Annotated[float, "s"] = 10.0  # how often instrument limits are re-read
    font_size: int = 11  # base point size; the Overview scales from it
    ack_target: str = "daemon"  # who takes acknowledgements (`call` name=acknowledge)
    sequencer_target: str = "sequencer"  # the job service (method `call`, name `submit`)
    operator: str = "operator"  # recorded with acknowledgements
