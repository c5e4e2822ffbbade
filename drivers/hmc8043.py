"""Rohde & Schwarz HMC8043 three-channel bench supply: the atomic oven (SCPI over socket 5025).

Channel commands go on one line with the channel selection (`INST:NSEL 1;:VOLT 3`), so no other
client can slip a channel change in between. The oven is current-driven: the voltage setting is
a compliance limit, the current setting the operating point.

Why not build on qcodes-contrib-drivers' `RohdeSchwarzHMC8043`: it sends the same commands
(`INST:NSEL n;:SOUR:VOLT ...`) but has no error check after a set, a current validator starting
at 0.5 mA (the oven is switched off with 0 A) and 'ON'/'OFF' strings instead of booleans;
our guarded, checked parameters would replace every one of its parameters. It runs as a test
oracle against the simulated HMC8043 instead (tests/sim/test_sim_oracles.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

from qcodes.instrument import ChannelList, InstrumentChannel
from qcodes.parameters import Parameter
from qcodes.validators import Bool

from ionpilot.drivers.base import (
    GuardedMultiChannelParameter,
    GuardedParameter,
    ScpiVisaDriver,
    hardware_range,
    parse_bool01,
    parse_float,
)

MODEL = "hmc8043"
CHANNEL_COUNT = 3


class Hmc8043Channel(InstrumentChannel["Hmc8043"]):
    """One output: voltage and current settings, enable, measured voltage and current."""

    def __init__(self, parent: Hmc8043, name: str, channel_number: int, **kwargs: Any) -> None:
        super().__init__(parent, name, **kwargs)
        self.channel_number = channel_number
        select = f"INST:NSEL {channel_number};:"
        self._select = select

        self.voltage: GuardedParameter = self.add_parameter(
            "voltage",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "voltage"),
            label=f"Output {channel_number} voltage setting",
            get_cmd=select + "VOLT?",
            get_parser=parse_float,
            set_cmd=parent.checked_setter(select + "VOLT {}"),
            docstring="Voltage setting (V): the compliance limit in constant-current operation.",
        )
        """Voltage setting (V): the compliance limit in constant-current operation."""

        self.current: GuardedParameter = self.add_parameter(
            "current",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "current"),
            label=f"Output {channel_number} current setting",
            get_cmd=select + "CURR?",
            get_parser=parse_float,
            set_cmd=parent.checked_setter(select + "CURR {}"),
            docstring="Current setting (A): the oven's operating point.",
        )
        """Current setting (A): the oven's operating point."""

        self.output: Parameter = self.add_parameter(
            "output",
            label=f"Output {channel_number} on",
            get_cmd=self._get_output,
            set_cmd=self._set_output,
            vals=Bool(),
            docstring="Output delivering power: channel enabled and master on. Setting True "
            "enables the channel and the master switch; False disables this channel only.",
        )
        """Output delivering power: channel enabled and master on."""

        self.measured_voltage: Parameter = self.add_parameter(
            "measured_voltage",
            label=f"Output {channel_number} measured voltage",
            unit="V",
            get_cmd=select + "MEAS:VOLT?",
            get_parser=parse_float,
            docstring="Voltage measured at the output terminals (V).",
        )
        """Voltage measured at the output terminals (V)."""

        self.measured_current: Parameter = self.add_parameter(
            "measured_current",
            label=f"Output {channel_number} measured current",
            unit="A",
            get_cmd=select + "MEAS:CURR?",
            get_parser=parse_float,
            docstring="Current measured through the output (A): the oven current.",
        )
        """Current measured through the output (A): the oven current."""

    def _get_output(self) -> bool:
        channel_on = parse_bool01(self.ask(self._select + "OUTP:CHAN?"))
        return channel_on and parse_bool01(self.ask("OUTP:MAST?"))

    def _set_output(self, on: bool) -> None:
        self.parent.checked_write(self._select + f"OUTP:CHAN {int(on)}")
        if on:
            self.parent.checked_write("OUTP:MAST 1")


class Hmc8043(ScpiVisaDriver):
    """HMC8043: channels `ch1`..`ch3` (also the ChannelList `channels`), master output."""

    model_name: ClassVar[str] = MODEL
    default_terminator = "\n"
    bus_methods: ClassVar[tuple[str, ...]] = ("errors", "reset_errors", "all_outputs_off")

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        channels = ChannelList(
            self, "channels", Hmc8043Channel, multichan_paramclass=GuardedMultiChannelParameter
        )
        for number in range(1, CHANNEL_COUNT + 1):
            channel = Hmc8043Channel(self, f"ch{number}", number)
            channels.append(channel)
            self.add_submodule(f"ch{number}", channel)
        self.channels: ChannelList[Hmc8043Channel] = self.add_submodule("channels", channels)
        """The three outputs."""

        self.master_output: Parameter = self.add_parameter(
            "master_output",
            label="Master output",
            get_cmd="OUTP:MAST?",
            get_parser=parse_bool01,
            set_cmd=lambda on: self.checked_write(f"OUTP:MAST {int(on)}"),
            vals=Bool(),
            docstring="Master output switch: off disconnects every channel at once.",
        )
        """Master output switch: off disconnects every channel at once."""

        self.reset_errors()
        self.connect_message()

    def all_outputs_off(self) -> None:
        """Safe state: master switch off (all channels stop delivering at once)."""
        self.master_output(False)
