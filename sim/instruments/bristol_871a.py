"""Bristol 871A wavemeter behind a 4-way fibre switch, SCPI over telnet (PROTOCOLS.md §5)."""

from __future__ import annotations

from .base import ScpiProtocol, out_of_range, parse_number

BANNER = "Bristol Instruments 871A Wavelength Meter, SN 871001"
SWITCH_CHANNELS = 8


class Bristol871a(ScpiProtocol):
    idn = "BRISTOL WAVELENGTH METER,871A,871001,3.2.1"
    terminator = "\r\n"
    max_clients = 1

    def setup(self) -> None:
        self.channel = 1
        self.add(":ROUTe:CHANnel", False, self._route)
        self.add(":ROUTe:CHANnel", True, lambda a, s: str(self.channel))
        for verb in (":MEASure", ":FETCh"):
            self.add(f"{verb}:FREQuency", True, lambda a, s: self._frequency())
            self.add(f"{verb}:WAVelength", True, lambda a, s: self._wavelength())
            self.add(f"{verb}:POWer", True, lambda a, s: self._power())
        self.add(":READ:ALL", True, lambda a, s: self._all())
        self.add(":SENSe:CALIbrate", False, lambda a, s: self.world.wavemeter_calibrate())

    def banner(self) -> bytes:
        return (BANNER + self.terminator).encode("ascii")

    def _route(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg)
        if value != int(value) or not 1 <= value <= SWITCH_CHANNELS:
            raise out_of_range()
        self.channel = int(value)

    def _frequency(self) -> str:
        r = self.world.wavemeter_read(self.channel)
        return f"{r.frequency_hz / 1e12:.6f}"

    def _wavelength(self) -> str:
        r = self.world.wavemeter_read(self.channel)
        return f"{r.wavelength_m * 1e9:.6f}"

    def _power(self) -> str:
        return f"{self.world.wavemeter_read(self.channel).power_w * 1e3:.4f}"

    def _all(self) -> str:
        r = self.world.wavemeter_read(self.channel)
        status = 0 if r.valid else 1
        return f"{r.index},{status},{r.wavelength_m * 1e9:.6f},{r.power_w * 1e3:.4f}"

    def reset(self) -> None:
        self.channel = 1
