"""Rohde & Schwarz SMB100A RF signal generator: the trap RF drive (SCPI over socket port 5025).

Power is ramped in `power_step_dbm` steps with `power_step_delay_s` between them: a sudden jump
of the trap drive heats or loses the ion, and a jump up can arc the helical resonator.
Every set is followed by one `SYST:ERR?` read so a refused command never leaves a wrong cache.

Why not build on qcodes-contrib-drivers' `RohdeSchwarz_SMB100A`: it is marked beta, checks no
error after a set, and its validators are wider than this unit (20 GHz, -120 dBm), so a typo
reaches the trap; subclassing it would mean deleting and redefining the three parameters the lab
uses (frequency, power, output) to get the guard, the ramp and the error check. Its dialect is
the same as ours (`SOUR:FREQ`, `SOUR:POW`, `OUTP:STAT`), and it runs as a test oracle against
the simulated SMB100A (tests/sim/test_sim_oracles.py), as does R&S's own RsInstrument.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qcodes.parameters import Parameter
from qcodes.validators import Bool

from ionpilot.drivers.base import (
    GuardedParameter,
    ScpiVisaDriver,
    hardware_range,
    parse_bool01,
    parse_float,
)

MODEL = "rs_smb100a"


class RsSmb100a(ScpiVisaDriver):
    """SMB100A: frequency (Hz), power (dBm, ramped), RF output on/off."""

    model_name: ClassVar[str] = MODEL
    default_terminator = "\n"
    bus_methods: ClassVar[tuple[str, ...]] = ("errors", "reset_errors", "rf_on", "rf_off")

    def __init__(
        self,
        name: str,
        address: str,
        *,
        power_step_dbm: float = 1.0,
        power_step_delay_s: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, address, **kwargs)

        self.frequency: GuardedParameter = self.add_parameter(
            "frequency",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "frequency"),
            label="RF frequency",
            get_cmd="SOUR:FREQ?",
            get_parser=parse_float,
            set_cmd=self.checked_setter("SOUR:FREQ {}"),
            docstring="CW frequency of the RF output (Hz).",
        )
        """CW frequency of the RF output (Hz)."""

        self.power: GuardedParameter = self.add_parameter(
            "power",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "power"),
            label="RF power",
            get_cmd="SOUR:POW?",
            get_parser=parse_float,
            set_cmd=self.checked_setter("SOUR:POW {}"),
            step=power_step_dbm,
            inter_delay=power_step_delay_s,
            docstring="RF output level (dBm); ramped in `step` dB every `inter_delay` s.",
        )
        """RF output level (dBm); ramped in `step` dB every `inter_delay` s."""

        self.output: Parameter = self.add_parameter(
            "output",
            label="RF output",
            get_cmd="OUTP:STAT?",
            get_parser=parse_bool01,
            set_cmd=self._set_output,
            vals=Bool(),
            docstring="RF output switched on (True) or off (False).",
        )
        """RF output switched on (True) or off (False)."""

        self.reset_errors()
        self.connect_message()

    def _set_output(self, on: bool) -> None:
        self.checked_write(f"OUTP:STAT {int(on)}")

    def rf_on(self) -> None:
        """Switch the RF output on at the present frequency and power."""
        self.output(True)

    def rf_off(self) -> None:
        """Switch the RF output off (the power set-point is kept)."""
        self.output(False)
