"""Keysight 53230A counter on the clock-laser/comb beat note (PROTOCOLS.md §4).

Command tree after the 53210A/53220A/53230A Programming Reference (CONFigure/MEASure:FREQuency
with expected value and resolution, [SENSe:]FREQuency:GATE, SAMPle:COUNt, TRIGger, INPut,
FORMat:DATA, INITiate/FETCh?/READ?, common commands). Each reading consumes its gate time in
world time.
"""

from __future__ import annotations

import math
import struct

from .scpi import (
    Handler,
    ScpiError,
    ScpiProtocol,
    data_stale,
    fmt_g,
    illegal_value,
    missing_parameter,
    out_of_range,
    parse_channel_list,
    parse_choice,
    parse_number,
    split_args,
)

GATE_RANGE_S = (1e-4, 1000.0)
GATE_DEFAULT_S = 0.1
NO_SIGNAL = 9.91e37  # the instrument's NaN
SAMPLE_RANGE = (1, 1_000_000)
#: resolution ~ expected x 1e-12 / gate (53230A: 12 digits in 1 s)
DIGITS_PER_SECOND = 1e-12
FREQ_UNITS = ("HZ", "KHZ", "MHZ", "GHZ")


def fmt_e(value: float) -> str:
    return f"{value:+.15E}"


def _sdev(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def trigger_deadlock() -> ScpiError:
    return ScpiError(-214, "Trigger deadlock")


class Keysight53230a(ScpiProtocol):
    idn = "Agilent Technologies,53230A,MY50001234,02.05-1519.666-1.19-4.15-127-155-35"
    no_error = '+0,"No error"'

    def setup(self) -> None:
        self._defaults()
        for long, function in (("FREQuency", "FREQ"), ("PERiod", "PER")):
            self.add(f"CONFigure[:SCALar]:{long}", False, self._configure_as(function))
            self.add(f"MEASure[:SCALar]:{long}", True, self._measure_as(function), args=True)
        self.add("CONFigure", True, lambda a, s: self._configuration())
        self.add("[SENSe]:FUNCtion[:ON]", True, lambda a, s: f'"{self.function} {self.channel}"')
        sense = "[SENSe]:FREQuency:GATE"
        self.add(f"{sense}:TIME", False, self._set_gate)
        self.add(f"{sense}:TIME", True, lambda a, s: fmt_e(self.gate_s))
        self.add(f"{sense}:SOURce", False, self._set_gate_source)
        self.add(f"{sense}:SOURce", True, lambda a, s: self.gate_source)
        self.add("SAMPle:COUNt", False, self._set_samples)
        self.add("SAMPle:COUNt", True, lambda a, s: f"{self.samples:+d}")
        self.add("TRIGger[:SEQuence]:SOURce", False, self._set_trigger_source)
        self.add("TRIGger[:SEQuence]:SOURce", True, lambda a, s: self.trigger_source)
        self.add("TRIGger[:SEQuence]:COUNt", False, self._set_trigger_count)
        self.add("TRIGger[:SEQuence]:COUNt", True, lambda a, s: f"{self.trigger_count:+d}")
        self.add("INPut#:IMPedance", False, self._set_impedance)
        self.add("INPut#:IMPedance", True, lambda a, s: fmt_e(self.impedance[self._input(s)]))
        self.add("INPut#:COUPling", False, self._set_coupling)
        self.add("INPut#:COUPling", True, lambda a, s: self.coupling[self._input(s)])
        self._input_number("INPut#:LEVel[#][:ABSolute]", "level_v", (-5.0, 5.0), 0.0, ("V", "MV"))
        self._input_number("INPut#:RANGe", "range_v", (5.0, 50.0), 5.0, ("V",))
        self._input_word(
            "INPut#:LEVel[#]:AUTO",
            "level_auto",
            {"ON": "1", "OFF": "0", "1": "1", "0": "0", "ONCE": "0"},
        )
        self._input_word("INPut#:SLOPe[#]", "slope", {"POSitive": "POS", "NEGative": "NEG"})
        self._input_word(
            "INPut#:NREJection", "noise_reject", {"ON": "1", "OFF": "0", "1": "1", "0": "0"}
        )
        self._input_word(
            "INPut#:FILTer[:LPASs][:STATe]", "low_pass", {"ON": "1", "OFF": "0", "1": "1", "0": "0"}
        )
        self.add("TRIGger[:SEQuence]:DELay", False, self._set_trigger_delay)
        self.add("TRIGger[:SEQuence]:DELay", True, lambda a, s: fmt_e(self.trigger_delay_s))
        self.add("TRIGger[:SEQuence]:SLOPe", False, self._set_trigger_slope)
        self.add("TRIGger[:SEQuence]:SLOPe", True, lambda a, s: self.trigger_slope)
        self.add("FORMat:BORDer", False, self._set_border)
        self.add("FORMat:BORDer", True, lambda a, s: self.byte_order)
        self._statistics_tree()
        self.add("FORMat[:DATA]", False, self._set_format)
        self.add("FORMat[:DATA]", True, lambda a, s: f"{self.data_format},{self.data_length}")
        self.add("READ", True, lambda a, s: self._read())
        self.add("INITiate[:IMMediate]", False, lambda a, s: self._initiate(), args=False)
        self.add("*TRG", False, lambda a, s: self._bus_trigger(), args=False)
        self.add("ABORt", False, lambda a, s: self._abort(), args=False)
        self.add("FETCh", True, lambda a, s: self._fetch())
        self.add("DATA:POINts", True, lambda a, s: f"{len(self.memory):+d}")
        self.add("DATA:REMove", True, self._remove, args=True)
        self.add("DATA:LAST", True, lambda a, s: self._last())
        self.add("R", True, self._read_and_erase, args=True)

    def _defaults(self) -> None:
        self.gate_s = GATE_DEFAULT_S
        self.gate_source = "TIME"
        self.channel = 1
        self.expected_hz: float | None = None
        self.samples = 1
        self.trigger_count = 1
        self.trigger_source = "IMM"
        self.impedance = {1: 1e6, 2: 1e6}
        self.coupling = {1: "AC", 2: "AC"}
        self.inputs: dict[int, dict[str, float | str]] = {
            n: {
                "level_v": 0.0,
                "range_v": 5.0,
                "level_auto": "1",
                "slope": "POS",
                "noise_reject": "0",
                "low_pass": "0",
            }
            for n in (1, 2)
        }
        self.function = "FREQ"
        self.trigger_delay_s = 0.0
        self.trigger_slope = "POS"
        self.byte_order = "NORM"
        self.statistics = False
        self.stats: list[float] = []
        self.data_format, self.data_length = "ASC", 15
        self.started_at: float | None = None
        self.waiting_for_bus = False
        self.memory: list[float] = []

    @staticmethod
    def _input(suffixes: tuple[str, ...]) -> int:
        text = next((x for x in suffixes if x), "1")
        if text not in ("1", "2"):
            raise ScpiError(-114, "Header suffix out of range")
        return int(text)

    # ---- configuration ------------------------------------------------------------------------

    def _configure_as(self, function: str) -> Handler:
        def handler(arg: str, s: tuple[str, ...]) -> None:
            self._configure(arg, s)
            self.function = function

        return handler

    def _measure_as(self, function: str) -> Handler:
        def handler(arg: str, s: tuple[str, ...]) -> str:
            self._configure(arg, s)
            self.function = function
            return self._read()

        return handler

    def _configure(self, arg: str, _s: tuple[str, ...]) -> None:
        """CONF:FREQ [<expected>[,<resolution>]][,(@n)]: resets sampling and triggering to the
        manual's defaults; a resolution chooses the gate time."""
        parts = split_args(arg)
        channel = 1
        if parts and parts[-1].startswith("("):
            channel = parse_channel_list(parts.pop())
            if channel not in (1, 2):
                raise illegal_value()
        if len(parts) > 2:
            raise ScpiError(-108, "Parameter not allowed")
        expected = resolution = None
        if parts:
            expected = parse_number(parts[0], FREQ_UNITS, minimum=0.1, maximum=350e6, default=10e6)
        if len(parts) == 2:
            assert expected is not None
            resolution = parse_number(parts[1], FREQ_UNITS, default=expected * 1e-10 * 10)
            if resolution <= 0:
                raise out_of_range()
        gate = GATE_DEFAULT_S
        if resolution is not None and expected is not None:
            gate = expected * DIGITS_PER_SECOND / resolution
            if not GATE_RANGE_S[0] <= gate <= GATE_RANGE_S[1]:
                raise out_of_range()
        self._defaults_for_configure()
        self.channel, self.expected_hz, self.gate_s = channel, expected, gate

    def _defaults_for_configure(self) -> None:
        self.trigger_delay_s = 0.0
        self.gate_source = "TIME"
        self.samples, self.trigger_count, self.trigger_source = 1, 1, "IMM"
        self.started_at, self.waiting_for_bus = None, False
        self.memory = []

    def _configuration(self) -> str:
        expected = self.expected_hz if self.expected_hz is not None else 10e6
        resolution = expected * DIGITS_PER_SECOND / self.gate_s
        return f'"{self.function} {fmt_e(expected)},{fmt_e(resolution)},(@{self.channel})"'

    def _set_gate(self, arg: str, _s: tuple[str, ...]) -> None:
        self.gate_s = parse_number(
            arg,
            ("S", "MS", "US"),
            minimum=GATE_RANGE_S[0],
            maximum=GATE_RANGE_S[1],
            default=GATE_DEFAULT_S,
        )

    def _set_gate_source(self, arg: str, _s: tuple[str, ...]) -> None:
        self.gate_source = parse_choice(arg, {"TIME": "TIME", "EXTernal": "EXT", "ADVanced": "ADV"})

    def _set_samples(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg, minimum=SAMPLE_RANGE[0], maximum=SAMPLE_RANGE[1], default=1)
        self.samples = int(value)

    def _set_trigger_count(self, arg: str, _s: tuple[str, ...]) -> None:
        self.trigger_count = int(parse_number(arg, minimum=1, maximum=1_000_000, default=1))

    def _set_trigger_source(self, arg: str, _s: tuple[str, ...]) -> None:
        self.trigger_source = parse_choice(
            arg, {"IMMediate": "IMM", "EXTernal": "EXT", "BUS": "BUS"}
        )

    def _set_impedance(self, arg: str, s: tuple[str, ...]) -> None:
        value = parse_number(arg, ("OHM",), minimum=50.0, maximum=1e6, default=1e6)
        if value not in (50.0, 1e6):
            value = 50.0 if value < 1e3 else 1e6  # the manual: rounded to the nearest setting
        self.impedance[self._input(s)] = value

    def _set_coupling(self, arg: str, s: tuple[str, ...]) -> None:
        self.coupling[self._input(s)] = parse_choice(arg, {"AC": "AC", "DC": "DC"})

    def _input_number(
        self,
        pattern: str,
        attr: str,
        bounds: tuple[float, float],
        default: float,
        units: tuple[str, ...],
    ) -> None:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            value = parse_number(arg, units, minimum=bounds[0], maximum=bounds[1], default=default)
            self.inputs[self._input(s)][attr] = value
            if attr == "level_v":
                self.inputs[self._input(s)]["level_auto"] = "0"  # a level set turns auto off

        self.add(pattern, False, setter)
        self.add(pattern, True, lambda a, s: fmt_e(float(self.inputs[self._input(s)][attr])))

    def _input_word(self, pattern: str, attr: str, choices: dict[str, str]) -> None:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            self.inputs[self._input(s)][attr] = parse_choice(arg, choices)

        self.add(pattern, False, setter)
        self.add(pattern, True, lambda a, s: str(self.inputs[self._input(s)][attr]))

    def _set_trigger_delay(self, arg: str, _s: tuple[str, ...]) -> None:
        self.trigger_delay_s = parse_number(
            arg, ("S", "MS", "US"), minimum=0.0, maximum=3600.0, default=0.0
        )

    def _set_trigger_slope(self, arg: str, _s: tuple[str, ...]) -> None:
        self.trigger_slope = parse_choice(arg, {"POSitive": "POS", "NEGative": "NEG"})

    def _set_border(self, arg: str, _s: tuple[str, ...]) -> None:
        self.byte_order = parse_choice(arg, {"NORMal": "NORM", "SWAPped": "SWAP"})

    # ---- statistics (CALCulate:AVERage) ------------------------------------------------------

    def _statistics_tree(self) -> None:
        calc = "CALCulate[#]"
        self.add(f"{calc}[:STATe]", False, lambda a, s: self._set_statistics(a))
        self.add(f"{calc}[:STATe]", True, lambda a, s: str(int(self.statistics)))
        self.add(f"{calc}:AVERage[:STATe]", False, lambda a, s: self._set_statistics(a))
        self.add(f"{calc}:AVERage[:STATe]", True, lambda a, s: str(int(self.statistics)))
        self.add(
            f"{calc}:AVERage:CLEar[:IMMediate]", False, lambda a, s: self.stats.clear(), args=False
        )
        self.add(f"{calc}:AVERage:COUNt:CURRent", True, lambda a, s: f"{len(self.stats):+d}")
        stats = {
            "AVERage": lambda v: sum(v) / len(v),
            "SDEViation": _sdev,
            "MINimum": min,
            "MAXimum": max,
            "PTPeak": lambda v: max(v) - min(v),
        }
        for node, fn in stats.items():
            self.add(f"{calc}:AVERage:{node}", True, self._statistic(fn))
        self.add(f"{calc}:AVERage:ALL", True, lambda a, s: self._all_statistics())

    def _set_statistics(self, arg: str) -> None:
        self.statistics = parse_choice(arg, {"ON": "1", "OFF": "0", "1": "1", "0": "0"}) == "1"

    def _statistic(self, fn):  # type: ignore[no-untyped-def]
        def query(_a: str, _s: tuple[str, ...]) -> str:
            if not self.stats:
                raise ScpiError(-230, "Data corrupt or stale")
            return fmt_e(fn(self.stats))

        return query

    def _all_statistics(self) -> str:
        if not self.stats:
            raise ScpiError(-230, "Data corrupt or stale")
        v = self.stats
        return ",".join(fmt_e(x) for x in (sum(v) / len(v), _sdev(v), min(v), max(v)))

    def _set_format(self, arg: str, _s: tuple[str, ...]) -> None:
        parts = split_args(arg)
        if not parts:
            raise missing_parameter()
        kind = parse_choice(parts[0], {"ASCii": "ASC", "REAL": "REAL"})
        if kind == "ASC":
            length = int(parse_number(parts[1], minimum=9, maximum=15)) if len(parts) > 1 else 15
        else:
            length = int(parse_number(parts[1], minimum=64, maximum=64)) if len(parts) > 1 else 64
        self.data_format, self.data_length = kind, length

    # ---- measuring ----------------------------------------------------------------------------

    def _one_reading(self) -> float:
        if self.channel != 1:
            self.world.advance(self.gate_s)
            return NO_SIGNAL
        return self._as_function(self.world.count_beat(self.gate_s))

    def _as_function(self, hz: float) -> float:
        if hz == NO_SIGNAL or self.function == "FREQ":
            return hz
        return 1.0 / hz if hz else NO_SIGNAL

    def _render(self, values: list[float]) -> str:
        if self.data_format == "REAL":
            order = ">" if self.byte_order == "NORM" else "<"
            payload = struct.pack(f"{order}{len(values)}d", *values)
            size = str(len(payload))
            return f"#{len(size)}{size}" + payload.decode("latin-1")
        digits = self.data_length - 1
        return ",".join(f"{v:+.{digits}E}" for v in values)

    def _read(self) -> str:
        if self.trigger_source == "BUS":
            raise trigger_deadlock()
        self._initiate()
        return self._fetch()

    def _measure(self, arg: str, s: tuple[str, ...]) -> str:
        self._configure(arg, s)
        return self._read()

    def _initiate(self) -> None:
        self.started_at = self.world.now()
        self.waiting_for_bus = self.trigger_source == "BUS"
        self.memory = []
        self.stats = []  # a new measurement starts new statistics

    def complete_pending(self) -> None:
        """A measurement started by INIT ends (its gates pass in world time)."""
        if self.started_at is not None and not self.waiting_for_bus:
            self._fetch()

    def _take(self, arg: str) -> list[float]:
        if not self.memory and self.started_at is not None and not self.waiting_for_bus:
            self._fetch()
        limit = int(parse_number(arg, minimum=1, maximum=1e6)) if arg else len(self.memory)
        out, self.memory = self.memory[:limit], self.memory[limit:]
        return out

    def _remove(self, arg: str, _s: tuple[str, ...]) -> str:
        if not arg:
            raise missing_parameter()
        if int(parse_number(arg, minimum=1, maximum=1e6)) > len(self.memory):
            raise ScpiError(-222, "Data out of range")
        return self._render(self._take(arg))

    def _read_and_erase(self, arg: str, _s: tuple[str, ...]) -> str:
        """R?: the stored readings, removed, always as a definite-length block (of ASCII
        readings in ASCII format)."""
        values = self._take(arg)
        if self.data_format == "REAL":
            return self._render(values)
        text = self._render(values) if values else ""
        size = str(len(text))
        return f"#{len(size)}{size}{text}"

    def _last(self) -> str:
        if not self.memory:
            raise ScpiError(-230, "Data corrupt or stale")
        unit = "HZ" if self.function == "FREQ" else "S"
        return f"{self._render(self.memory[-1:])} {unit}"

    def _bus_trigger(self) -> None:
        if self.waiting_for_bus:
            self.waiting_for_bus = False
            self.started_at = self.world.now()

    def _abort(self) -> None:
        self.started_at, self.waiting_for_bus = None, False

    def _fetch(self) -> str:
        if self.started_at is None or self.waiting_for_bus:
            if self.memory:
                return self._render(self.memory)
            raise data_stale()
        elapsed = self.world.now() - self.started_at
        self.started_at = None
        count = self.samples * self.trigger_count
        if elapsed < self.gate_s:
            self.world.advance(self.gate_s - elapsed)
        if self.trigger_delay_s:
            self.world.advance(self.trigger_delay_s)
        values = [
            (
                NO_SIGNAL
                if self.channel != 1
                else self._as_function(self.world.beat_now(self.gate_s))
            )
            if i == 0
            else self._one_reading()
            for i in range(count)
        ]
        self.memory = values
        if self.statistics:
            self.stats.extend(v for v in values if v != NO_SIGNAL)
        return self._render(values)

    def reset(self) -> None:
        """*RST: frequency on input 1, gate 0.1 s (TIME), 1 sample, immediate trigger, 1 MOhm
        AC inputs, ASCII format."""
        self._defaults()


__all__ = ["Keysight53230a", "fmt_e", "fmt_g"]
