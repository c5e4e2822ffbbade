"""QDAC-II periodic generators (square, sine, triangle, arbitrary from a trace), the traces and
the external trigger outputs: the parts of the QDAC-II SCPI reference that QDevil's driver uses
for waveforms (`sour{ch}:squ|sine|tri|awg:...`, `trac:...`, `outp:trig{n}:...`). A started
generator drives the channel's output in world time (PROTOCOLS.md §2)."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..world import World
from .scpi import (
    Handler,
    ScpiError,
    fmt_g,
    illegal_value,
    missing_parameter,
    out_of_range,
    parse_block,
    parse_bool,
    parse_choice,
    parse_number,
    settings_conflict,
    split_args,
)

KINDS = {"SQUare": "squ", "SINE": "sine", "TRIangle": "tri", "AWG": "awg"}
FREQUENCY_RANGE_HZ = (1e-3, 1e6)
AWG_SAMPLE_S = 1e-6  # the QDAC-II plays traces at 1 MS/s
TRACE_POINTS_MAX = 8_000_000
N_OUTPUT_TRIGGERS = 5


@dataclass
class Wave:
    """One channel's generator of one kind."""

    kind: str
    period_s: float = 1e-3
    duty_percent: float = 50.0
    shape: str = "symm"  # squ/tri type: pos, neg, symm
    inverted: bool = False
    span_v: float = 0.2
    offset_v: float = 0.0
    repetitions: int = -1
    slew_v_per_s: float = math.inf
    delay_s: float = 0.0
    trigger_source: str = "imm"
    continuous: bool = False
    armed: bool = False
    started_at: float | None = None
    trace: str = ""
    scale: float = 1.0
    markers: dict[str, int] = field(default_factory=dict)


class WaveHost(Protocol):
    """What the generators need of the QDAC-II protocol object."""

    world: World
    traces: dict[str, list[float]]

    def add(
        self,
        pattern: str,
        query: bool,
        handler: Handler,
        *,
        args: bool | None = None,
        max_suffix: int | None = None,
    ) -> None: ...

    def channel_of(self, suffixes: tuple[str, ...]) -> int: ...

    def check_level(self, ch: int, volts: float) -> None: ...


def unit_value(wave: Wave, phase: float, trace: list[float]) -> float:
    """The generator's output relative to its offset at `phase` in [0, 1) of one period."""
    if wave.kind == "awg":
        if not trace:
            return 0.0
        return wave.scale * trace[min(len(trace) - 1, int(phase * len(trace)))]
    if wave.kind == "sine":
        value = math.sin(2 * math.pi * phase)
    elif wave.kind == "squ":
        value = 1.0 if phase < wave.duty_percent / 100 else -1.0
    else:  # triangle rising for the duty cycle, falling for the rest
        rise = max(1e-12, wave.duty_percent / 100)
        value = 2 * phase / rise - 1 if phase < rise else 1 - 2 * (phase - rise) / (1 - rise)
    if wave.inverted:
        value = -value
    half = wave.span_v / 2
    if wave.kind in ("squ", "tri") and wave.shape == "pos":
        return half + half * value
    if wave.kind in ("squ", "tri") and wave.shape == "neg":
        return -half + half * value
    return half * value


def profile(wave: Wave, t0: float, trace: list[float]) -> Callable[[float], float]:
    period = len(trace) * AWG_SAMPLE_S if wave.kind == "awg" else wave.period_s
    period = max(period, 1e-9)

    def output(t: float) -> float:
        elapsed = t - t0 - wave.delay_s
        if elapsed < 0:
            return wave.offset_v
        cycles = elapsed / period
        if 0 <= wave.repetitions <= math.floor(cycles):
            return wave.offset_v + unit_value(wave, 1.0 - 1e-12, trace)
        return wave.offset_v + unit_value(wave, cycles - math.floor(cycles), trace)

    return output


class Waves:
    """The generators, traces and trigger outputs of one QDAC-II."""

    def __init__(self, host: WaveHost, channels: int) -> None:
        self.host = host
        self.channels = channels
        self.reset()
        for long, kind in KINDS.items():
            self._tree(f"SOURce#:{long}", kind)
        host.add("TRACe:DEFine", False, self._define)
        host.add("TRACe:DATA", False, self._data)
        host.add("TRACe:DATA", True, self._data_query, args=True)
        host.add("TRACe:CATalog", True, lambda a, s: ",".join(f'"{n}"' for n in host.traces))
        host.add("TRACe:REMove:ALL", False, lambda a, s: host.traces.clear(), args=False)
        host.add("TRACe:REMove", False, self._remove)
        out = "OUTPut#:TRIGger#"
        host.add(f"{out}:SOURce", False, self._out_source, max_suffix=N_OUTPUT_TRIGGERS)
        host.add(f"{out}:SOURce", True, self._out_get("source"), max_suffix=N_OUTPUT_TRIGGERS)
        for node, attr, unit in (("WIDTh", "width", "S"), ("DELay", "delay", "S")):
            host.add(f"{out}:{node}", False, self._out_number(attr, unit))
            host.add(f"{out}:{node}", True, self._out_get(attr), max_suffix=N_OUTPUT_TRIGGERS)
        host.add(f"{out}:POLarity", False, self._out_polarity, max_suffix=N_OUTPUT_TRIGGERS)
        host.add(f"{out}:POLarity", True, self._out_get("polarity"), max_suffix=N_OUTPUT_TRIGGERS)
        host.add(f"{out}:SIGNal", False, lambda a, s: None, args=False)

    def reset(self) -> None:
        self.waves: dict[tuple[int, str], Wave] = {}
        self.host.traces.clear()
        self.outputs = {
            n: {"source": "hold", "width": 1e-6, "delay": 0.0, "polarity": "norm"}
            for n in range(1, N_OUTPUT_TRIGGERS + 1)
        }

    def wave(self, suffixes: tuple[str, ...], kind: str) -> Wave:
        ch = self.host.channel_of(suffixes)
        return self.waves.setdefault((ch, kind), Wave(kind))

    # ---- per-channel generator tree -----------------------------------------------------------

    def _tree(self, base: str, kind: str) -> None:
        add = self.host.add
        numbers = {
            "SPAN": ("span_v", (0.0, 20.0)),
            "OFFSet": ("offset_v", (-10.0, 10.0)),
            "DCYCle": ("duty_percent", (0.0, 100.0)),
            "DELay": ("delay_s", (0.0, 3600.0)),
            "SCALe": ("scale", (-100.0, 100.0)),
        }
        for node, (attr, bounds) in numbers.items():
            add(f"{base}:{node}", False, self._number(kind, attr, bounds))
            add(f"{base}:{node}", True, self._query(kind, attr))
        add(f"{base}:FREQuency", False, self._frequency(kind))
        add(f"{base}:FREQuency", True, lambda a, s: fmt_g(1 / self.wave(s, kind).period_s))
        add(f"{base}:PERiod", False, self._period(kind))
        add(f"{base}:PERiod", True, self._query(kind, "period_s"))
        add(f"{base}:COUNt", False, self._count(kind))
        add(f"{base}:COUNt", True, self._query(kind, "repetitions"))
        add(
            f"{base}:TYPE",
            False,
            self._word(kind, "shape", {"POSitive": "pos", "NEGative": "neg", "SYMMetric": "symm"}),
        )
        add(f"{base}:TYPE", True, lambda a, s: self.wave(s, kind).shape)
        add(f"{base}:POLarity", False, self._polarity(kind))
        add(f"{base}:POLarity", True, lambda a, s: "inv" if self.wave(s, kind).inverted else "norm")
        add(f"{base}:SLEW", False, self._slew(kind))
        add(f"{base}:SLEW", True, self._query(kind, "slew_v_per_s"))
        add(f"{base}:DEFine", False, self._define_wave(kind))
        add(f"{base}:DEFine", True, lambda a, s: f'"{self.wave(s, kind).trace}"')
        add(f"{base}:TRIGger:SOURce", False, self._trigger_source(kind))
        add(f"{base}:TRIGger:SOURce", True, lambda a, s: self.wave(s, kind).trigger_source)
        add(f"{base}:INITiate[:IMMediate]", False, self._initiate(kind), args=False)
        add(f"{base}:INITiate:CONTinuous", False, self._continuous(kind))
        add(
            f"{base}:ABORt",
            False,
            lambda a, s: self.abort(self.host.channel_of(s), kind),
            args=False,
        )
        add(f"{base}:NCLeft", True, self._cycles_left(kind))
        for marker in ("STARt", "END", "PSTart", "PEND"):
            add(f"{base}:MARKer:{marker}", False, self._marker(kind, marker))

    def _number(self, kind: str, attr: str, bounds: tuple[float, float]) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            value = parse_number(
                arg, ("V", "MV", "S", "MS", "US", "PCT"), minimum=bounds[0], maximum=bounds[1]
            )
            if attr == "offset_v":
                self.host.check_level(self.host.channel_of(s), value)
            setattr(self.wave(s, kind), attr, value)

        return setter

    def _query(self, kind: str, attr: str) -> Handler:
        return lambda a, s: fmt_g(getattr(self.wave(s, kind), attr))

    def _frequency(self, kind: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            hz = parse_number(
                arg,
                ("HZ", "KHZ", "MHZ"),
                minimum=FREQUENCY_RANGE_HZ[0],
                maximum=FREQUENCY_RANGE_HZ[1],
            )
            self.wave(s, kind).period_s = 1 / hz

        return setter

    def _period(self, kind: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            lo, hi = 1 / FREQUENCY_RANGE_HZ[1], 1 / FREQUENCY_RANGE_HZ[0]
            self.wave(s, kind).period_s = parse_number(
                arg, ("S", "MS", "US"), minimum=lo, maximum=hi
            )

        return setter

    def _count(self, kind: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            value = parse_number(arg, minimum=-1, maximum=1e9)
            if value != int(value):
                raise illegal_value()
            self.wave(s, kind).repetitions = int(value)

        return setter

    def _word(self, kind: str, attr: str, choices: dict[str, str]) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            setattr(self.wave(s, kind), attr, parse_choice(arg, choices))

        return setter

    def _polarity(self, kind: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            word = parse_choice(arg, {"NORMal": "norm", "INVerted": "inv"})
            self.wave(s, kind).inverted = word == "inv"

        return setter

    def _slew(self, kind: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            if arg.strip().upper() in ("INF", "INFINITY"):
                self.wave(s, kind).slew_v_per_s = math.inf
                return
            self.wave(s, kind).slew_v_per_s = parse_number(arg, minimum=0.01, maximum=2e7)

        return setter

    def _define_wave(self, kind: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            name = _unquote(arg)
            if name not in self.host.traces:
                raise illegal_value()
            self.wave(s, kind).trace = name

        return setter

    def _trigger_source(self, kind: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            word = arg.strip().lower()
            if not word:
                raise missing_parameter()
            word = "imm" if word == "immediate" else word
            valid = {"imm", "bus", "hold"} | {f"int{i}" for i in range(1, 15)}
            valid |= {f"ext{i}" for i in range(1, 5)}
            if word not in valid:
                raise illegal_value()
            self.wave(s, kind).trigger_source = word

        return setter

    def _continuous(self, kind: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            wave = self.wave(s, kind)
            wave.continuous = wave.armed = parse_bool(arg)  # continuous: armed, and re-armed

        return setter

    def _initiate(self, kind: str) -> Handler:
        def setter(_a: str, s: tuple[str, ...]) -> None:
            ch = self.host.channel_of(s)
            wave = self.wave(s, kind)
            if kind == "awg" and wave.trace not in self.host.traces:
                raise settings_conflict()
            if wave.trigger_source == "imm":
                self.start(ch, wave)
            else:
                wave.armed = True

        return setter

    def _marker(self, kind: str, marker: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            self.wave(s, kind).markers[marker] = int(parse_number(arg, minimum=0, maximum=14))

        return setter

    def _cycles_left(self, kind: str) -> Handler:
        def query(_a: str, s: tuple[str, ...]) -> str:
            wave = self.wave(s, kind)
            if wave.started_at is None:
                return "0"
            if wave.repetitions < 0:
                return "-1"
            trace = self.host.traces.get(wave.trace, [])
            period = len(trace) * AWG_SAMPLE_S if kind == "awg" else wave.period_s
            done = math.floor((self.host.world.now() - wave.started_at) / max(period, 1e-9))
            return str(max(0, wave.repetitions - done))

        return query

    def start(self, ch: int, wave: Wave) -> None:
        wave.armed = wave.continuous
        wave.started_at = self.host.world.now()
        trace = list(self.host.traces.get(wave.trace, []))
        self.host.world.run_dc_profile(ch, profile(wave, wave.started_at, trace))

    def fire(self, source: str) -> None:
        for (ch, _kind), wave in self.waves.items():
            if wave.armed and wave.trigger_source == source:
                self.start(ch, wave)

    def abort(self, ch: int, kind: str | None = None) -> None:
        for (c, k), wave in self.waves.items():
            if c == ch and kind in (None, k) and wave.started_at is not None:
                wave.started_at, wave.armed = None, False
                self.host.world.run_dc_profile(ch, None)

    # ---- traces --------------------------------------------------------------------------------

    def _define(self, arg: str, _s: tuple[str, ...]) -> None:
        parts = split_args(arg)
        if len(parts) != 2:
            raise missing_parameter()
        name = _unquote(parts[0])
        size = parse_number(parts[1], minimum=1, maximum=TRACE_POINTS_MAX)
        if not name or size != int(size):
            raise illegal_value()
        self.host.traces[name] = [0.0] * int(size)

    def _data(self, arg: str, _s: tuple[str, ...]) -> None:
        parts = split_args(arg)
        if len(parts) < 2:
            raise missing_parameter()
        name = _unquote(parts[0])
        if name not in self.host.traces:
            raise illegal_value()
        if parts[1].startswith("#"):
            data = parse_block(parts[1])
            if len(data) % 4:
                raise illegal_value()
            values = list(struct.unpack(f"<{len(data) // 4}f", data))
        else:
            values = [parse_number(v) for v in parts[1:]]
        if len(values) != len(self.host.traces[name]):
            raise ScpiError(-221, "Settings conflict")
        if any(abs(v) > 10.0 for v in values):
            raise out_of_range()
        self.host.traces[name] = values

    def _data_query(self, arg: str, _s: tuple[str, ...]) -> str:
        name = _unquote(arg)
        if name not in self.host.traces:
            raise illegal_value()
        return ",".join(fmt_g(v) for v in self.host.traces[name])

    def _remove(self, arg: str, _s: tuple[str, ...]) -> None:
        name = _unquote(arg)
        if self.host.traces.pop(name, None) is None:
            raise illegal_value()

    # ---- external trigger outputs --------------------------------------------------------------

    @staticmethod
    def _out_number_of(suffixes: tuple[str, ...]) -> int:
        text = suffixes[-1] if suffixes else ""
        return int(text) if text else 1

    def _out_get(self, attr: str) -> Handler:
        return lambda a, s: str(self.outputs[self._out_number_of(s)][attr])

    def _out_source(self, arg: str, s: tuple[str, ...]) -> None:
        word = arg.strip().lower()
        valid = (
            {"hold", "bus"} | {f"int{i}" for i in range(1, 15)} | {f"ext{i}" for i in range(1, 5)}
        )
        if not word:
            raise missing_parameter()
        if word not in valid:
            raise illegal_value()
        self.outputs[self._out_number_of(s)]["source"] = word

    def _out_number(self, attr: str, unit: str) -> Handler:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            n = self._out_number_of(s)
            if not 1 <= n <= N_OUTPUT_TRIGGERS:
                raise ScpiError(-114, "Header suffix out of range")
            self.outputs[n][attr] = parse_number(
                arg, (unit, "MS", "US", "NS"), minimum=0.0, maximum=10.0
            )

        return setter

    def _out_polarity(self, arg: str, s: tuple[str, ...]) -> None:
        word = parse_choice(arg, {"NORMal": "norm", "INVerted": "inv"})
        self.outputs[self._out_number_of(s)]["polarity"] = word


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text
