"""R&S SMB100A RF generator: the trap drive (PROTOCOLS.md §1)."""

from __future__ import annotations

from .base import ScpiProtocol, fmt_g, out_of_range, parse_bool, parse_number

FREQUENCY_RANGE_HZ = (100e3, 6e9)
POWER_RANGE_DBM = (-145.0, 30.0)


class Smb100a(ScpiProtocol):
    idn = "Rohde&Schwarz,SMB100A,1406.6000k03/180123,3.1.19.15-3.50.124.73"

    def setup(self) -> None:
        self.add("[SOURce]:FREQuency[:CW]", False, self._set_frequency)
        self.add("[SOURce]:FREQuency[:CW]", True, lambda a, s: fmt_g(self.world.rf_frequency_hz))
        power = "[SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]"
        self.add(power, False, self._set_power)
        self.add(power, True, lambda a, s: fmt_g(self.world.rf_power_dbm))
        self.add("OUTPut[:STATe]", False, self._set_output)
        self.add("OUTPut[:STATe]", True, lambda a, s: str(int(self.world_rf_output())))

    def world_rf_output(self) -> bool:
        self.world.ions_present()  # bring the world up to now (a trip may have happened)
        return self.world.rf_output

    def _set_frequency(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg, ("HZ", "KHZ", "MHZ", "GHZ"))
        if not FREQUENCY_RANGE_HZ[0] <= value <= FREQUENCY_RANGE_HZ[1]:
            raise out_of_range()
        self.world.set_rf(frequency_hz=value)

    def _set_power(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg, ("DBM",))
        if not POWER_RANGE_DBM[0] <= value <= POWER_RANGE_DBM[1]:
            raise out_of_range()
        self.world.set_rf(power_dbm=value)

    def _set_output(self, arg: str, _s: tuple[str, ...]) -> None:
        self.world.set_rf(output=parse_bool(arg))

    def reset(self) -> None:
        self.world.set_rf(frequency_hz=30e6, power_dbm=0.0, output=True)
