"""QDevil QDAC-II 24-channel DC source: the trap electrodes (SCPI over socket port 5025).

Voltage changes are ramped by the QDAC itself at each channel's slew rate (`sour{n}:volt:slew`),
which is exact and does not tie up the host thread. The power-on slew is very fast (INF on the real
unit, 2e7 V/s in the simulated lab): before every voltage change the driver reads the channel's
slew rate and, if it is outside the allowed range, sets it to the allowed maximum first. A jump
of the electrode voltages kicks or loses the ion.

Why not build on QDevil's own driver (qcodes_contrib_drivers.drivers.QDevil.QDAC2): the lab
uses four DC set-points per channel, which must be guarded (limits refused before anything is
sent), slew-safe and error-checked; QDevil's `dc_constant_V` validates +-10 V whatever the range,
reads no error after a set, and each instance builds ~700 parameters (sweeps, lists, triggers,
current sense on 24 channels) that the driver host would describe and snapshot. It also pulls
pandas and autobahn into the runtime. We speak its dialect (`sour{n}:volt:mode fix` before a
level, as it does) and run it as a test oracle against the simulated QDAC-II
(tests/sim/test_sim_oracles.py); sweeps and lists are used through it, not re-implemented here.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from qcodes.instrument import ChannelList, InstrumentChannel
from qcodes.parameters import Parameter
from qcodes.validators import Enum

from ionpilot.drivers.base import (
    GuardedMultiChannelParameter,
    GuardedParameter,
    ScpiVisaDriver,
    format_number,
    hardware_range,
    parse_float,
)
from ionpilot.drivers.errors import InstrumentReplyError

MODEL = "qdac2"
CHANNEL_COUNT = 24


def parse_slew(reply: str) -> float:
    """Slew rate in V/s; `INF` (or the SCPI 9.9E37 stand-in) is an instantaneous jump."""
    text = reply.strip()
    if text.upper() in ("INF", "+INF", "INFINITY"):
        return math.inf
    try:
        value = parse_float(text)
    except InstrumentReplyError:
        if re.fullmatch(r"\+?9\.9\d*[eE]\+?37", text):  # 9.91E+37: SCPI infinity
            return math.inf
        raise
    return math.inf if value >= 9.9e37 else value


def parse_word(*allowed: str) -> Any:
    """A parser accepting one of a few keywords (case-insensitive), returned lower-case."""

    def parser(reply: str) -> str:
        word = reply.strip().lower()
        if word not in allowed:
            raise InstrumentReplyError(reply, f"not one of {allowed}")
        return word

    return parser


class Qdac2Channel(InstrumentChannel["Qdac2"]):
    """One QDAC-II output: DC voltage (V), slew rate (V/s), output range and filter."""

    def __init__(self, parent: Qdac2, name: str, channel_number: int, **kwargs: Any) -> None:
        super().__init__(parent, name, **kwargs)
        self.channel_number = channel_number
        n = channel_number

        self.voltage: GuardedParameter = self.add_parameter(
            "voltage",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "voltage"),
            label=f"Electrode {n} voltage",
            get_cmd=f"sour{n}:volt?",
            get_parser=parse_float,
            set_cmd=self._set_voltage,
            docstring="DC set-point (V); the QDAC slews to it at `slew_rate`.",
        )
        """DC set-point (V); the QDAC slews to it at `slew_rate`."""

        self.voltage_last: Parameter = self.add_parameter(
            "voltage_last",
            label=f"Electrode {n} present voltage",
            unit="V",
            get_cmd=f"sour{n}:volt:last?",
            get_parser=parse_float,
            docstring="Present output voltage (V); differs from `voltage` while slewing.",
        )
        """Present output voltage (V); differs from `voltage` while slewing."""

        self.slew_rate: GuardedParameter = self.add_parameter(
            "slew_rate",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "slew_rate"),
            label=f"Electrode {n} slew rate",
            get_cmd=f"sour{n}:volt:slew?",
            get_parser=parse_slew,
            set_cmd=parent.checked_setter(f"sour{n}:volt:slew {{}}"),
            docstring="Rate (V/s) at which the QDAC ramps this channel to a new voltage.",
        )
        """Rate (V/s) at which the QDAC ramps this channel to a new voltage."""

        self.output_range: Parameter = self.add_parameter(
            "output_range",
            label=f"Electrode {n} range",
            get_cmd=f"sour{n}:rang?",
            get_parser=parse_word("low", "high"),
            set_cmd=lambda word: parent.checked_write(f"sour{n}:rang {word}"),
            vals=Enum("low", "high"),
            docstring="Output range: `high` (±10 V) or `low` (±2 V, lower noise).",
        )
        """Output range: `high` (±10 V) or `low` (±2 V, lower noise)."""

        self.output_filter: Parameter = self.add_parameter(
            "output_filter",
            label=f"Electrode {n} filter",
            get_cmd=f"sour{n}:filt?",
            get_parser=parse_word("dc", "med", "high"),
            set_cmd=lambda word: parent.checked_write(f"sour{n}:filt {word}"),
            vals=Enum("dc", "med", "high"),
            docstring="Output low-pass filter: `dc` (10 Hz), `med` (10 kHz), `high` (300 kHz).",
        )
        """Output low-pass filter: `dc` (10 Hz), `med` (10 kHz), `high` (300 kHz)."""

    def _set_voltage(self, volts: float) -> None:
        self._ensure_safe_slew()
        n = self.channel_number
        # A channel another client left in sweep or list mode ignores a DC level until it is
        # back in fixed mode (QDAC-II manual, VOLTage:MODE); QDevil's driver sends it every time.
        self.parent.write(f"sour{n}:volt:mode fix")
        self.parent.checked_write(f"sour{n}:volt {format_number(volts)}")

    def _ensure_safe_slew(self) -> None:
        # Read fresh: another client (or the front panel) may have changed it since our last set.
        rate = self.slew_rate.get()
        lo, hi = self.slew_rate.allowed_range()
        if not lo <= rate <= hi:
            self.slew_rate.set(hi)


class Qdac2(ScpiVisaDriver):
    """QDAC-II: 24 channels `ch01`..`ch24`, also as the ChannelList `channels`."""

    model_name: ClassVar[str] = MODEL
    default_terminator = "\n"
    error_query: ClassVar[str] = "syst:err?"

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        channels = ChannelList(
            self, "channels", Qdac2Channel, multichan_paramclass=GuardedMultiChannelParameter
        )
        for number in range(1, CHANNEL_COUNT + 1):
            channel = Qdac2Channel(self, f"ch{number:02d}", number)
            channels.append(channel)
            self.add_submodule(f"ch{number:02d}", channel)
        self.channels: ChannelList[Qdac2Channel] = self.add_submodule("channels", channels)
        """All 24 channels; `qdac.channels.voltage(0)` sets every one (each guarded)."""
        self.reset_errors()
        self.connect_message()

    def channel(self, number: int) -> Qdac2Channel:
        """Channel by its front-panel number (1..24)."""
        if not 1 <= number <= CHANNEL_COUNT:
            raise KeyError(f"QDAC-II has channels 1..{CHANNEL_COUNT}, not {number}")
        module = self.submodules[f"ch{number:02d}"]
        assert isinstance(module, Qdac2Channel)
        return module
