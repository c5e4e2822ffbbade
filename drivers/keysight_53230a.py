"""Keysight 53230A universal counter: the comb beat notes (SCPI over socket port 5025).

A reading takes one gate time, so the VISA timeout follows the gate (gate + `timeout_margin_s`);
the host's poll thread blocks for that long. A reading of 9.91E37 (the counter's NaN: no signal)
is refused as a bad reply, never published as a frequency.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qcodes.parameters import Parameter
from qcodes.validators import Ints

from ionpilot.drivers.base import GuardedParameter, ScpiVisaDriver, hardware_range, parse_float

MODEL = "keysight_53230a"


class Keysight53230a(ScpiVisaDriver):
    """53230A: frequency (Hz) on one input, gate time (s)."""

    model_name: ClassVar[str] = MODEL
    default_terminator = "\n"

    def __init__(
        self,
        name: str,
        address: str,
        *,
        input_channel: int = 1,
        timeout_margin_s: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, address, **kwargs)
        self.reset_errors()
        self._base_timeout_s = self.timeout.get() or 5.0
        self._timeout_margin_s = timeout_margin_s

        self.gate_time: GuardedParameter = self.add_parameter(
            "gate_time",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "gate_time"),
            label="Gate time",
            get_cmd="SENS:FREQ:GATE:TIME?",
            get_parser=parse_float,
            set_cmd=self._set_gate_time,
            docstring="Frequency gate time (s); the VISA timeout follows it.",
        )
        """Frequency gate time (s); the VISA timeout follows it."""

        self.frequency: Parameter = self.add_parameter(
            "frequency",
            label="Beat frequency",
            unit="Hz",
            get_cmd="READ?",
            get_parser=parse_float,
            docstring="One frequency reading over one gate time (Hz); no signal is an error.",
        )
        """One frequency reading over one gate time (Hz); no signal is an error."""

        self.input_channel: Parameter = self.add_parameter(
            "input_channel",
            label="Input channel",
            get_cmd=None,
            set_cmd=self._configure,
            initial_value=input_channel,  # sends CONF:FREQ (@n) at connect
            vals=Ints(1, 2),
            docstring="Counter input (1 or 2) measured by `frequency`; setting it reconfigures "
            "the counter (CONF:FREQ resets the gate time to 0.1 s).",
        )
        """Counter input (1 or 2) measured by `frequency`."""

        self.connect_message()

    def _configure(self, channel: int) -> None:
        self.checked_write(f"CONF:FREQ (@{channel})")
        self.gate_time.cache.invalidate()
        self._follow_gate(parse_float(self.ask("SENS:FREQ:GATE:TIME?")))

    def _set_gate_time(self, seconds: float) -> None:
        self._follow_gate(seconds)
        self.checked_write(f"SENS:FREQ:GATE:TIME {seconds:.15g}")

    def _follow_gate(self, seconds: float) -> None:
        self.timeout.set(max(self._base_timeout_s, seconds + self._timeout_margin_s))
