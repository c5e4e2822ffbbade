"""Bristol 871A wavemeter behind a fibre switch, SCPI over telnet (PROTOCOLS.md §5).

Command tree after the 871 Series User's Guide, chapter "SCPI commands": MEASure/READ/FETCh
(:ALL, :ENVironment, :FREQuency, :POWer, :WAVelength, :WNUMber), UNIT, SENSe (averaging,
calibration), STATus:QUEStionable, SYSTem:ERRor (30-entry queue). MEASure and READ take a new
exposure; FETCh returns the last one again. The fibre switch (ROUTe:CHANnel) is the lab's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..physics import SPEED_OF_LIGHT
from ..world import WavemeterReading
from .scpi import ScpiProtocol, illegal_value, parse_choice, parse_number

BANNER = "Bristol Instruments 871A Wavelength Meter, SN 871001"
SWITCH_CHANNELS = 8
#: questionable-status bits of an invalid exposure: power and wavelength outside their range
QUES_POWER = 1 << 3
QUES_WAVELENGTH = 1 << 5
ENVIRONMENT = "24.6 C,760.0 MMHG"
FRAME_RATES_HZ = (20, 50, 100, 250, 500, 1000)  # VIS/NIR model
ON_OFF = {"ON": "ON", "OFF": "OFF", "1": "ON", "0": "OFF"}
QUANTITIES = {"FREQuency": "FREQ", "WAVelength": "WAV", "WNUMber": "WNUM", "POWer": "POW"}


class Bristol871a(ScpiProtocol):
    idn = "BRISTOL WAVELENGTH METER,871A,871001,3.2.1"
    terminator = "\r\n"
    max_clients = 1
    queue_size = 30

    def setup(self) -> None:
        self._defaults()
        self.last: WavemeterReading | None = None
        self.add(":ROUTe:CHANnel", False, self._route)
        self.add(":ROUTe:CHANnel", True, lambda a, s: str(self.channel))
        for verb in (":MEASure", ":READ", ":FETCh"):
            fresh = verb != ":FETCh"
            self.add(f"{verb}[:SCALar]:FREQuency", True, self._value(fresh, self._frequency))
            self.add(f"{verb}[:SCALar]:WAVelength", True, self._value(fresh, self._wavelength))
            self.add(f"{verb}[:SCALar]:WNUMber", True, self._value(fresh, self._wavenumber))
            self.add(f"{verb}[:SCALar]:POWer", True, self._value(fresh, self._power))
            self.add(f"{verb}:ALL", True, self._value(fresh, self._all))
            self.add(f"{verb}:ENVironment", True, lambda a, s: ENVIRONMENT)
        self._unit("FREQuency", "unit_frequency", {"THZ": "THZ", "GHZ": "GHZ"})
        self._unit("WAVelength", "unit_wavelength", {"NM": "NM", "UM": "UM", "ANGStrom": "ANG"})
        self._unit("POWer", "unit_power", {"MW": "MW", "DBM": "DBM"})
        self.add(":SENSe:MEDium", False, self._set_medium)
        self.add(":SENSe:MEDium", True, lambda a, s: self.medium)
        self.add(":SENSe:AVERage:STATe", False, self._set_average_state)
        self.add(":SENSe:AVERage:STATe", True, lambda a, s: "ON" if self.averaging else "OFF")
        self.add(":SENSe:AVERage:COUNt", False, self._set_average_count)
        self.add(":SENSe:AVERage:COUNt", True, lambda a, s: str(self.average_count))
        self.add(
            ":SENSe:CALIbrate", False, lambda a, s: self.world.wavemeter_calibrate(), args=False
        )
        self.add(":STATus:QUEStionable:CONDition", True, lambda a, s: str(self._status()))
        self._setting(
            ":SENSe:CALIbrate:METHod", "calibration_method", {"TIMe": "TIME", "TEMPerature": "TEMP"}
        )
        self._integer(":SENSe:CALIbrate:TEMPerature", "calibration_temperature", (1, 50))
        self._integer(":SENSe:CALIbrate:TIMer", "calibration_timer_min", (5, 1440))
        self._setting(":SENSe:DETector:FUNCtion", "detector", {"CW": "CW", "PULSed": "PULS"})
        self._setting(":SENSe:EXPosure:AUTO", "auto_exposure", ON_OFF)
        self._setting(
            ":TRIGger[:SEQuence]:METHod",
            "trigger_method",
            {"INTernal": "INT", "RISE": "RISE", "FALL": "FALL"},
        )
        self.add(":TRIGger[:SEQuence]:RATE", False, self._set_rate)
        self.add(":TRIGger[:SEQuence]:RATE", True, lambda a, s: str(self.frame_rate_hz))
        self.add(":SENSe:AVERage:DATA", True, self._average_data, args=True)
        self.add(":CALCulate:RESet", False, lambda a, s: self._calc_reset(), args=False)
        self.add(":CALCulate:DELTa:METHod", False, self._set_delta_method)
        self.add(":CALCulate:DELTa:METHod", True, lambda a, s: self.delta_method)
        self.add(":CALCulate:DATA", True, self._calc_data, args=True)
        self.add(":CALCulate:TIMe[:ELAPsed]", True, lambda a, s: self._elapsed())

    def _defaults(self) -> None:
        self.channel = 1
        self.unit_frequency = "THZ"
        self.unit_wavelength = "NM"
        self.unit_power = "MW"
        self.medium = "VACUUM"
        self.averaging = False
        self.average_count = 2
        self.calibration_method = "TEMP"
        self.calibration_temperature = 5
        self.calibration_timer_min = 30
        self.detector = "CW"
        self.auto_exposure = "ON"
        self.trigger_method = "INT"
        self.frame_rate_hz = 20
        self.delta_method = "START"
        self.calc_start: WavemeterReading | None = None
        self.calc_readings: list[WavemeterReading] = []
        self.calc_since = self.world.now()

    def banner(self) -> bytes:
        return (BANNER + self.terminator).encode("ascii")

    def _unit(self, node: str, attr: str, choices: dict[str, str]) -> None:
        def setter(arg: str, _s: tuple[str, ...]) -> None:
            setattr(self, attr, parse_choice(arg, choices))

        self.add(f":UNIT:{node}", False, setter)
        self.add(f":UNIT:{node}", True, lambda a, s: str(getattr(self, attr)))

    def _setting(self, pattern: str, attr: str, choices: dict[str, str]) -> None:
        def setter(arg: str, _s: tuple[str, ...]) -> None:
            setattr(self, attr, parse_choice(arg, choices))

        self.add(pattern, False, setter)
        self.add(pattern, True, lambda a, s: str(getattr(self, attr)))

    def _integer(self, pattern: str, attr: str, bounds: tuple[int, int]) -> None:
        def setter(arg: str, _s: tuple[str, ...]) -> None:
            value = parse_number(arg, minimum=bounds[0], maximum=bounds[1])
            if value != int(value):
                raise illegal_value()
            setattr(self, attr, int(value))

        self.add(pattern, False, setter)
        self.add(pattern, True, lambda a, s: str(getattr(self, attr)))

    def _set_rate(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg)
        if value not in FRAME_RATES_HZ:
            raise illegal_value()
        self.frame_rate_hz = int(value)

    def _quantity(self, arg: str) -> Callable[[WavemeterReading], str]:
        word = parse_choice(arg, QUANTITIES)
        renders = {
            "FREQ": self._frequency,
            "WAV": self._wavelength,
            "WNUM": self._wavenumber,
            "POW": self._power,
        }
        return renders[word]

    def _average_data(self, arg: str, _s: tuple[str, ...]) -> str:
        """The mean of the last `count` exposures (averaging on), else the latest one."""
        render = self._quantity(arg)
        n = self.average_count if self.averaging else 1
        readings = [self.world.wavemeter_read(self.channel) for _ in range(n)]
        self.last = readings[-1]
        valid = [r for r in readings if r.valid]
        if not valid:
            return render(readings[-1])
        hz = sum(r.frequency_hz for r in valid) / len(valid)
        watts = sum(r.power_w for r in valid) / len(valid)
        return render(WavemeterReading(True, hz, SPEED_OF_LIGHT / hz, watts, readings[-1].index))

    def _calc_reset(self) -> None:
        self.calc_start, self.calc_readings = None, []
        self.calc_since = self.world.now()

    def _set_delta_method(self, arg: str, _s: tuple[str, ...]) -> None:
        self.delta_method = parse_choice(arg, {"STARt": "START", "MAXMin": "MAXMIN"})

    def _calc_data(self, arg: str, _s: tuple[str, ...]) -> str:
        """The delta of a quantity since CALC:RES: latest minus start (START) or max minus min
        (MAXMIN), in the quantity's present unit."""
        render = self._quantity(arg)
        reading = self.world.wavemeter_read(self.channel)
        self.last = reading
        if not reading.valid:
            return render(reading)
        if self.calc_start is None:
            self.calc_start = reading
        self.calc_readings.append(reading)
        del self.calc_readings[:-1000]
        values = [float(render(r)) for r in self.calc_readings]
        if self.delta_method == "START":
            delta = values[-1] - float(render(self.calc_start))
        else:
            delta = max(values) - min(values)
        return f"{delta:.6f}"

    def _elapsed(self) -> str:
        seconds = int(self.world.now() - self.calc_since)
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def _route(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg, minimum=1, maximum=SWITCH_CHANNELS)
        if value != int(value):
            raise illegal_value()
        self.channel = int(value)

    def _set_medium(self, arg: str, _s: tuple[str, ...]) -> None:
        self.medium = parse_choice(arg, {"AIR": "AIR", "VACuum": "VACUUM"})

    def _set_average_state(self, arg: str, _s: tuple[str, ...]) -> None:
        self.averaging = (
            parse_choice(arg, {"ON": "ON", "OFF": "OFF", "1": "ON", "0": "OFF"}) == "ON"
        )

    def _set_average_count(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg, minimum=2, maximum=128)
        self.average_count = int(value)

    def _value(self, fresh: bool, render):  # type: ignore[no-untyped-def]
        def query(_a: str, _s: tuple[str, ...]) -> str:
            if fresh or self.last is None:
                self.last = self.world.wavemeter_read(self.channel)
            return str(render(self.last))

        return query

    def _frequency(self, r: WavemeterReading) -> str:
        scale = 1e12 if self.unit_frequency == "THZ" else 1e9
        return f"{r.frequency_hz / scale:.{6 if scale == 1e12 else 3}f}"

    def _air(self, wavelength_m: float) -> float:
        return wavelength_m / 1.000273 if self.medium == "AIR" and wavelength_m else wavelength_m

    def _wavelength(self, r: WavemeterReading) -> str:
        nm = self._air(r.wavelength_m) * 1e9
        if self.unit_wavelength == "UM":
            return f"{nm / 1e3:.9f}"
        if self.unit_wavelength == "ANG":
            return f"{nm * 10:.5f}"
        return f"{nm:.6f}"

    def _wavenumber(self, r: WavemeterReading) -> str:
        return f"{r.frequency_hz / SPEED_OF_LIGHT / 100:.5f}"

    def _power(self, r: WavemeterReading) -> str:
        mw = r.power_w * 1e3
        if self.unit_power == "DBM":
            return f"{10 * math.log10(mw):.2f}" if mw > 0 else "-99.00"
        return f"{mw:.4f}"

    def _status(self) -> int:
        if self.last is None or self.last.valid:
            return 0
        return QUES_POWER | QUES_WAVELENGTH

    def _all(self, r: WavemeterReading) -> str:
        status = 0 if r.valid else QUES_POWER | QUES_WAVELENGTH
        return f"{r.index},{status},{self._wavelength(r)},{self._power(r)}"

    def reset(self) -> None:
        """*RST: units THz/nm/mW, vacuum, averaging off (count 2), calibration by temperature
        (0.5 C, timer 30 min), CW detector, auto exposure, internal trigger; switch on input 1."""
        self._defaults()
