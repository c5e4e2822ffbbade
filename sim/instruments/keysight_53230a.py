"""Keysight 53230A counter on the clock-laser/comb beat note (PROTOCOLS.md §4).

Command tree after the 53210A/53220A/53230A Programming Reference (CONFigure/MEASure:FREQuency
with expected value and resolution, [SENSe:]FREQuency:GATE, SAMPle:COUNt, TRIGger, INPut,
FORMat:DATA, INITiate/FETCh?/READ?, common commands). Each reading consumes its gate time in
world time.
"""

from __future__ import annotations

import struct

from .scpi import (
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


def trigger_deadlock() -> ScpiError:
    return ScpiError(-214, "Trigger deadlock")


class Keysight53230a(ScpiProtocol):
    idn = "Agilent Technologies,53230A,MY50001234,02.05-1519.666-1.19-4.15-127-155-35"
    no_error = '+0,"No error"'

    def setup(self) -> None:
        self._defaults()
        self.add("CONFigure[:SCALar]:FREQuency", False, self._configure)
        self.add("CONFigure", True, lambda a, s: self._configuration())
        self.add("MEASure[:SCALar]:FREQuency", True, self._measure, args=True)
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
        self.add("FORMat[:DATA]", False, self._set_format)
        self.add("FORMat[:DATA]", True, lambda a, s: f"{self.data_format},{self.data_length}")
        self.add("READ", True, lambda a, s: self._read())
        self.add("INITiate[:IMMediate]", False, lambda a, s: self._initiate(), args=False)
        self.add("*TRG", False, lambda a, s: self._bus_trigger(), args=False)
        self.add("ABORt", False, lambda a, s: self._abort(), args=False)
        self.add("FETCh", True, lambda a, s: self._fetch())
        self.add("DATA:POINts", True, lambda a, s: f"{len(self.memory):+d}")

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
        self.gate_source = "TIME"
        self.samples, self.trigger_count, self.trigger_source = 1, 1, "IMM"
        self.started_at, self.waiting_for_bus = None, False
        self.memory = []

    def _configuration(self) -> str:
        expected = self.expected_hz if self.expected_hz is not None else 10e6
        resolution = expected * DIGITS_PER_SECOND / self.gate_s
        return f'"FREQ {fmt_e(expected)},{fmt_e(resolution)},(@{self.channel})"'

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
        return self.world.count_beat(self.gate_s)

    def _render(self, values: list[float]) -> str:
        if self.data_format == "REAL":
            payload = struct.pack(f">{len(values)}d", *values)
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
        values = [
            (NO_SIGNAL if self.channel != 1 else self.world.beat_now(self.gate_s))
            if i == 0
            else self._one_reading()
            for i in range(count)
        ]
        self.memory = values
        return self._render(values)

    def reset(self) -> None:
        """*RST: frequency on input 1, gate 0.1 s (TIME), 1 sample, immediate trigger, 1 MOhm
        AC inputs, ASCII format."""
        self._defaults()


__all__ = ["Keysight53230a", "fmt_e", "fmt_g"]
