"""R&S HMC8043 three-channel bench supply: the atomic oven on channel 1 (PROTOCOLS.md §3).

Command tree after the HMC804x SCPI Programmers Manual (INSTrument, [SOURce:]VOLTage/CURRent,
OUTPut:CHANnel/MASTer, MEASure[:SCALar]:VOLTage/CURRent/POWer, common commands)."""

from __future__ import annotations

from ..world import N_SUPPLY_CHANNELS
from .scpi import (
    ScpiProtocol,
    fmt_g,
    illegal_value,
    missing_parameter,
    out_of_range,
    parse_bool,
    parse_number,
)

VOLTAGE_RANGE_V = (0.0, 32.0)
CURRENT_RANGE_A = (0.0, 3.0)


class Hmc8043(ScpiProtocol):
    idn = "Rohde&Schwarz,HMC8043,023456789,01.400"

    def setup(self) -> None:
        self.selected = 1
        self.add("INSTrument:NSELect", False, self._select_number)
        self.add("INSTrument:NSELect", True, lambda a, s: str(self.selected))
        self.add("INSTrument[:SELect]", False, self._select_name)
        self.add("INSTrument[:SELect]", True, lambda a, s: f"OUT{self.selected}")
        volt = "[SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]"
        curr = "[SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]"
        self.add(volt, False, self._set_voltage)
        self.add(volt, True, lambda a, s: fmt_g(self._channel().voltage_v))
        self.add(curr, False, self._set_current)
        self.add(curr, True, lambda a, s: fmt_g(self._channel().current_a))
        self.add("OUTPut:CHANnel[:STATe]", False, self._set_channel_output)
        self.add("OUTPut:CHANnel[:STATe]", True, lambda a, s: str(int(self._channel().enabled)))
        self.add("OUTPut:MASTer[:STATe]", False, self._set_master)
        self.add("OUTPut:MASTer[:STATe]", True, lambda a, s: str(int(self.world.supply_master)))
        self.add("OUTPut[:STATe]", False, self._set_output)
        self.add("OUTPut[:STATe]", True, self._get_output)
        self.add("MEASure[:SCALar]:VOLTage[:DC]", True, self._measure_voltage)
        self.add("MEASure[:SCALar]:CURRent[:DC]", True, self._measure_current)
        self.add("MEASure[:SCALar]:POWer", True, self._measure_power)

    def _channel(self):  # type: ignore[no-untyped-def]
        return self.world.supply[self.selected - 1]

    def _select_number(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg)
        if value not in (1, 2, 3):
            raise out_of_range()
        self.selected = int(value)

    def _select_name(self, arg: str, _s: tuple[str, ...]) -> None:
        word = arg.strip().upper()
        if not word:
            raise missing_parameter()
        names = {f"OUT{i}": i for i in range(1, N_SUPPLY_CHANNELS + 1)}
        names.update({f"OUTP{i}": i for i in range(1, N_SUPPLY_CHANNELS + 1)})
        names.update({f"OUTPUT{i}": i for i in range(1, N_SUPPLY_CHANNELS + 1)})
        if word not in names:
            raise illegal_value()
        self.selected = names[word]

    def _set_voltage(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(
            arg, ("V", "MV"), minimum=VOLTAGE_RANGE_V[0], maximum=VOLTAGE_RANGE_V[1]
        )
        self.world.set_supply(self.selected, voltage_v=value)

    def _set_current(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(
            arg, ("A", "MA"), minimum=CURRENT_RANGE_A[0], maximum=CURRENT_RANGE_A[1]
        )
        self.world.set_supply(self.selected, current_a=value)

    def _set_channel_output(self, arg: str, _s: tuple[str, ...]) -> None:
        self.world.set_supply(self.selected, enabled=parse_bool(arg))

    def _set_master(self, arg: str, _s: tuple[str, ...]) -> None:
        self.world.set_supply_master(parse_bool(arg))

    def _set_output(self, arg: str, _s: tuple[str, ...]) -> None:
        on = parse_bool(arg)
        self.world.set_supply(self.selected, enabled=on)
        self.world.set_supply_master(on)

    def _get_output(self, _a: str, _s: tuple[str, ...]) -> str:
        return str(int(self._channel().enabled and self.world.supply_master))

    def _measure_voltage(self, arg: str, _s: tuple[str, ...]) -> str:
        return fmt_g(self.world.supply_measure(self.selected)[0])

    def _measure_current(self, arg: str, _s: tuple[str, ...]) -> str:
        return fmt_g(self.world.supply_measure(self.selected)[1])

    def _measure_power(self, arg: str, _s: tuple[str, ...]) -> str:
        volts, amps = self.world.supply_measure(self.selected)
        return fmt_g(volts * amps)

    def reset(self) -> None:
        """*RST: every channel 0 V, 0 A and disabled, master off, channel 1 selected."""
        for ch in range(1, N_SUPPLY_CHANNELS + 1):
            self.world.set_supply(ch, voltage_v=0.0, current_a=0.0, enabled=False)
        self.world.set_supply_master(False)
        self.selected = 1
