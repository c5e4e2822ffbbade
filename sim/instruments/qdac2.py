"""QDevil QDAC-II 24-channel DC source: the trap's compensation electrodes (PROTOCOLS.md §2).

Command tree after the QDAC-II SCPI command reference (SOURce DC/VOLTage, SWEep, LIST,
SENSe current measurement, READ/FETCh, TINT, SYSTem:ERRor) as QDevil's own QCoDeS driver
(qcodes_contrib_drivers.drivers.QDevil.QDAC2) sends it. A DC sweep is generated in world time: an
analog sweep is a linear ramp from start to stop over points x dwell, a stepped one is
approximated by the same ramp (the ion sees the trap field averaged over its ~MHz secular motion).
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ..world import N_DC_CHANNELS
from .qdac2_waves import Waves
from .scpi import (
    Handler,
    ScpiProtocol,
    channel_number,
    fmt_g,
    illegal_value,
    missing_parameter,
    out_of_range,
    parse_block,
    parse_bool,
    parse_channel_set,
    parse_choice,
    parse_number,
    settings_conflict,
    split_args,
    suffix_out_of_range,
)

RANGE_LIMIT_V = {"low": 2.0, "high": 10.0}
SLEW_RANGE = (0.01, 2e7)
FILTERS = ("dc", "med", "high")
DWELL_RANGE_S = (1e-6, 3600.0)
N_INTERNAL_TRIGGERS = 14
CURRENT_NOISE_A = {"low": 1e-11, "high": 1e-7}  # leakage readings of the open electrodes
MODES = {"FIXed": "fix", "SWEep": "swe", "LIST": "list"}
TRIGGER_SOURCES = (
    "imm",
    "bus",
    "hold",
    *(f"int{i}" for i in range(1, N_INTERNAL_TRIGGERS + 1)),
    *(f"ext{i}" for i in range(1, 5)),
)


@dataclass
class DcGenerator:
    """A channel's sweep/list generator and its trigger."""

    mode: str = "fix"
    sweep_start_v: float = 0.0
    sweep_stop_v: float = 0.0
    sweep_points: int = 2
    sweep_dwell_s: float = 1e-3
    sweep_generation: str = "step"
    sweep_direction: str = "up"
    list_v: list[float] = field(default_factory=list)
    list_dwell_s: float = 1e-3
    list_direction: str = "up"
    list_trigger_mode: str = "auto"
    repetitions: int = 1
    trigger_source: str = "imm"
    continuous: bool = False
    armed: bool = False
    started_at: float | None = None
    delay_s: float = 0.0
    markers: dict[str, int] = field(default_factory=dict)

    def duration_s(self) -> float:
        if self.mode == "list":
            return max(1, len(self.list_v)) * self.list_dwell_s
        return self.sweep_points * self.sweep_dwell_s


@dataclass
class Sense:
    """A channel's current-measurement settings."""

    current_range: str = "high"
    aperture_s: float = 1e-3
    nplc: float = 1.0
    delay_s: float = 0.0
    count: int = 1
    trigger_source: str = "imm"
    readings: list[float] = field(default_factory=list)


def waveform(gen: DcGenerator, t0: float) -> Callable[[float], float]:
    """The output of a sweep or list generator started at world time t0: `points` steps of
    `dwell` (an analog sweep ramps linearly across each step instead), repeated `repetitions`
    times (-1: forever), then holding the last value."""
    if gen.mode == "swe":
        n = gen.sweep_points
        span = gen.sweep_stop_v - gen.sweep_start_v
        values = [gen.sweep_start_v + span * i / (n - 1) for i in range(n)]
        dwell, direction = gen.sweep_dwell_s, gen.sweep_direction
    else:
        values, dwell, direction = list(gen.list_v), gen.list_dwell_s, gen.list_direction
    if direction == "down":
        values.reverse()
    analog = gen.mode == "swe" and gen.sweep_generation == "anal"
    period = len(values) * dwell
    repetitions, delay = gen.repetitions, gen.delay_s

    def output(t: float) -> float:
        elapsed = t - t0 - delay
        if elapsed < 0:
            return values[0]
        cycle = math.floor(elapsed / period)
        if 0 <= repetitions <= cycle:
            return values[-1]
        k = (elapsed - cycle * period) / dwell
        i = min(len(values) - 1, math.floor(k + 1e-9))
        if analog and i < len(values) - 1:
            return values[i] + (k - i) * (values[i + 1] - values[i])
        return values[i]

    return output


class Qdac2(ScpiProtocol):
    idn = "QDevil, QDAC-II, 101, 13-1.57"
    no_error = '0, "No error"'
    error_format = '{code}, "{message}"'

    def setup(self) -> None:
        self.traces: dict[str, list[float]] = {}
        self._rng = random.Random(2)
        self._defaults()
        ch = "SOURce#"
        level = f"{ch}:VOLTage[:LEVel][:IMMediate][:AMPLitude]"
        self.add("SOURce:VOLTage[:LEVel][:IMMediate][:AMPLitude]", False, self._set_level_list)
        self.add(level, False, self._set_level)
        self.add(level, True, lambda a, s: fmt_g(self.levels[self._ch(s) - 1]))
        self.add(f"{ch}:VOLTage:LAST", True, lambda a, s: fmt_g(self._output(self._ch(s))))
        self.add(f"{ch}:VOLTage:TRIGgered", False, self._set_next)
        self.add(f"{ch}:VOLTage:TRIGgered", True, lambda a, s: fmt_g(self.next_v[self._ch(s) - 1]))
        for slew in (f"{ch}:VOLTage:SLEW", f"{ch}:DC:VOLTage:SLEW"):
            self.add(slew, False, self._set_slew)
            self.add(slew, True, lambda a, s: fmt_g(self.world.dc[self._ch(s) - 1].slew_v_per_s))
        self.add(f"{ch}:VOLTage:MODE", False, self._set_mode)
        self.add(f"{ch}:VOLTage:MODE", True, lambda a, s: self.gen[self._ch(s) - 1].mode)
        self.add(f"{ch}:RANGe", False, self._set_range)
        self.add(f"{ch}:RANGe", True, lambda a, s: self.ranges[self._ch(s) - 1])
        for rng, limit in RANGE_LIMIT_V.items():
            self.add(f"{ch}:RANGe:{rng.upper()}:MINimum", True, self._limit(-limit))
            self.add(f"{ch}:RANGe:{rng.upper()}:MAXimum", True, self._limit(limit))
        self.add(f"{ch}:FILTer", False, self._set_filter)
        self.add(f"{ch}:FILTer", True, lambda a, s: self.filters[self._ch(s) - 1])
        self._sweep_tree(ch)
        self._list_tree(ch)
        self._generator_tree(ch)
        self._sense_tree()
        self.add("TINT", False, self._internal_trigger)
        self.add("*TRG", False, lambda a, s: self._fire("bus"), args=False)
        self.add("ABORt", False, lambda a, s: self._abort_all(), args=False)
        self.add("SYSTem:COMMunicate:LAN:MAC", True, lambda a, s: '"049162C01016"')
        self.waves = Waves(self, N_DC_CHANNELS)

    def _defaults(self) -> None:
        n = N_DC_CHANNELS
        self.ranges = ["high"] * n
        self.filters = ["high"] * n
        self.levels = [self.world.dc[i].level_v for i in range(n)]
        self.next_v = [0.0] * n
        self.gen = [DcGenerator() for _ in range(n)]
        self.sense = [Sense() for _ in range(n)]

    @staticmethod
    def _ch(suffixes: tuple[str, ...]) -> int:
        return channel_number(suffixes, N_DC_CHANNELS)

    def _limit(self, value: float):  # type: ignore[no-untyped-def]
        def query(_a: str, s: tuple[str, ...]) -> str:
            self._ch(s)
            return fmt_g(value)

        return query

    # ---- fixed DC -----------------------------------------------------------------------------

    def _check_level(self, ch: int, value: float) -> None:
        if abs(value) > RANGE_LIMIT_V[self.ranges[ch - 1]]:
            raise out_of_range()

    def _set_level(self, arg: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        value = parse_number(arg, ("V", "MV"))
        self._check_level(ch, value)
        self.levels[ch - 1] = value
        if self.gen[ch - 1].mode == "fix":
            self.world.set_dc(ch, level_v=value)

    def _set_level_list(self, arg: str, _s: tuple[str, ...]) -> None:
        """`sour:volt <V>,(@1,2)`: one level on several channels (all checked first)."""
        if "(@" not in arg:
            return self._set_level(arg, ("",))
        parts = split_args(arg)
        if len(parts) != 2:
            raise missing_parameter()
        value = parse_number(parts[0], ("V", "MV"))
        channels = parse_channel_set(parts[1])
        for ch in channels:
            if not 1 <= ch <= N_DC_CHANNELS:
                raise out_of_range()
            self._check_level(ch, value)
        for ch in channels:
            self._set_level(parts[0], (str(ch),))

    def _set_next(self, arg: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        value = parse_number(arg, ("V", "MV"))
        self._check_level(ch, value)
        self.next_v[ch - 1] = value

    def _set_slew(self, arg: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        if arg.strip().upper() in ("INF", "INFINITY"):
            value = SLEW_RANGE[1]
        else:
            value = parse_number(arg, minimum=SLEW_RANGE[0], maximum=SLEW_RANGE[1])
        self.world.set_dc(ch, slew_v_per_s=value)

    def _set_mode(self, arg: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        gen = self.gen[ch - 1]
        mode = parse_choice(arg, MODES)
        if mode == gen.mode:
            return
        gen.mode = mode
        gen.started_at, gen.armed = None, False
        if mode == "fix":
            self.world.set_dc(ch, level_v=self.levels[ch - 1])

    def _word(self, arg: str, allowed: tuple[str, ...]) -> str:
        return parse_choice(arg, {w: w for w in allowed})

    def _set_range(self, arg: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        word = self._word(arg, tuple(RANGE_LIMIT_V))
        if abs(self.levels[ch - 1]) > RANGE_LIMIT_V[word]:
            raise out_of_range()
        self.ranges[ch - 1] = word

    def _set_filter(self, arg: str, s: tuple[str, ...]) -> None:
        self.filters[self._ch(s) - 1] = self._word(arg, FILTERS)

    # ---- sweep, list and their trigger ---------------------------------------------------------

    def _gen_number(self, pattern: str, attr: str, bounds: tuple[float, float], cast=float):  # type: ignore[no-untyped-def]
        def setter(arg: str, s: tuple[str, ...]) -> None:
            ch = self._ch(s)
            value = parse_number(
                arg, ("V", "MV", "S", "MS", "US"), minimum=bounds[0], maximum=bounds[1]
            )
            if cast is int and value != int(value):
                raise out_of_range()
            if attr.endswith("_v"):
                self._check_level(ch, value)
            setattr(self.gen[ch - 1], attr, cast(value))

        self.add(pattern, False, setter)
        self.add(pattern, True, lambda a, s: fmt_g(getattr(self.gen[self._ch(s) - 1], attr)))

    def _gen_word(self, pattern: str, attr: str, choices: dict[str, str]) -> None:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            setattr(self.gen[self._ch(s) - 1], attr, parse_choice(arg, choices))

        self.add(pattern, False, setter)
        self.add(pattern, True, lambda a, s: str(getattr(self.gen[self._ch(s) - 1], attr)))

    def _sweep_tree(self, ch: str) -> None:
        swe = f"{ch}:SWEep"
        self._gen_number(f"{swe}:STARt", "sweep_start_v", (-10.0, 10.0))
        self._gen_number(f"{swe}:STOP", "sweep_stop_v", (-10.0, 10.0))
        self._gen_number(f"{swe}:POINts", "sweep_points", (2, 1e8), int)
        self._gen_number(f"{swe}:DWELl", "sweep_dwell_s", DWELL_RANGE_S)
        self._gen_number(f"{swe}:COUNt", "repetitions", (-1, 1e8), int)
        self._gen_word(
            f"{swe}:GENeration", "sweep_generation", {"STEPped": "step", "ANALog": "anal"}
        )
        self._gen_word(f"{swe}:DIRection", "sweep_direction", {"UP": "up", "DOWN": "down"})
        self.add(f"{swe}:TIME", True, lambda a, s: fmt_g(self.gen[self._ch(s) - 1].duration_s()))
        self.add(f"{swe}:NCLeft", True, self._cycles_left)

    def _list_tree(self, ch: str) -> None:
        lst = f"{ch}:LIST"
        self.add(f"{lst}:VOLTage", False, self._set_list(append=False))
        self.add(f"{lst}:VOLTage:APPend", False, self._set_list(append=True))
        self.add(
            f"{lst}:VOLTage",
            True,
            lambda a, s: ",".join(fmt_g(v) for v in self.gen[self._ch(s) - 1].list_v),
        )
        self.add(f"{lst}:POINts", True, lambda a, s: str(len(self.gen[self._ch(s) - 1].list_v)))
        self._gen_number(f"{lst}:DWELl", "list_dwell_s", DWELL_RANGE_S)
        self._gen_number(f"{lst}:COUNt", "repetitions", (-1, 1e8), int)
        self._gen_word(f"{lst}:DIRection", "list_direction", {"UP": "up", "DOWN": "down"})
        self._gen_word(f"{lst}:TMODe", "list_trigger_mode", {"AUTO": "auto", "STEPped": "step"})
        self.add(f"{lst}:NCLeft", True, self._cycles_left)

    def _generator_tree(self, ch: str) -> None:
        dc = f"{ch}:DC"
        self.add(f"{dc}:TRIGger:SOURce", False, self._set_trigger_source)
        self.add(
            f"{dc}:TRIGger:SOURce", True, lambda a, s: self.gen[self._ch(s) - 1].trigger_source
        )
        self.add(f"{dc}:INITiate[:IMMediate]", False, self._initiate, args=False)
        self.add(f"{dc}:INITiate:CONTinuous", False, self._set_continuous)
        self.add(
            f"{dc}:INITiate:CONTinuous",
            True,
            lambda a, s: str(int(self.gen[self._ch(s) - 1].continuous)),
        )
        self.add(f"{dc}:ABORt", False, lambda a, s: self._abort(self._ch(s)), args=False)
        self.add(f"{ch}:ALL:ABORt", False, self._abort_channel, args=False)
        self._gen_number(f"{dc}:DELay", "delay_s", (0.0, 3600.0))
        self._gen_number(f"{dc}:NCLeft", "repetitions", (-1, 1e8), int)
        for marker in ("STARt", "END", "SSTart", "SEND"):
            self.add(f"{dc}:MARKer:{marker}", False, self._set_marker(marker))
            self.add(f"{dc}:MARKer:{marker}", True, self._marker_query(marker))

    def _set_list(self, append: bool):  # type: ignore[no-untyped-def]
        def setter(arg: str, s: tuple[str, ...]) -> None:
            ch = self._ch(s)
            if arg.startswith("#"):  # IEEE 488.2 block of little-endian float32 (QDevil's default)
                data = parse_block(arg)
                if len(data) % 4:
                    raise illegal_value()
                values = list(struct.unpack(f"<{len(data) // 4}f", data))
            else:
                values = [parse_number(v, ("V", "MV")) for v in split_args(arg)]
            if not values:
                raise missing_parameter()
            for v in values:
                self._check_level(ch, v)
            gen = self.gen[ch - 1]
            gen.list_v = (gen.list_v if append else []) + values

        return setter

    def _marker_query(self, marker: str) -> Handler:
        return lambda a, s: str(self.gen[self._ch(s) - 1].markers.get(marker, 0))

    def _set_marker(self, marker: str):  # type: ignore[no-untyped-def]
        def setter(arg: str, s: tuple[str, ...]) -> None:
            value = parse_number(arg, minimum=0, maximum=N_INTERNAL_TRIGGERS)
            self.gen[self._ch(s) - 1].markers[marker] = int(value)

        return setter

    def _set_trigger_source(self, arg: str, s: tuple[str, ...]) -> None:
        word = arg.strip().lower()
        if not word:
            raise missing_parameter()
        if word in ("immediate", "imm"):
            word = "imm"
        if word not in TRIGGER_SOURCES:
            raise out_of_range() if word[:3] in ("int", "ext") else missing_parameter()
        self.gen[self._ch(s) - 1].trigger_source = word

    def _set_continuous(self, arg: str, s: tuple[str, ...]) -> None:
        gen = self.gen[self._ch(s) - 1]
        gen.continuous = gen.armed = parse_bool(arg)  # continuous: armed, and re-armed

    def _initiate(self, _a: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        gen = self.gen[ch - 1]
        if gen.mode == "list" and not gen.list_v:
            raise settings_conflict()
        if gen.trigger_source == "imm":
            self._start(ch)
        else:
            gen.armed = True

    def _fire(self, source: str) -> None:
        for i, gen in enumerate(self.gen):
            if gen.armed and gen.trigger_source == source:
                self._start(i + 1)
        self.waves.fire(source)

    def _internal_trigger(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg)
        if value != int(value) or not 1 <= value <= N_INTERNAL_TRIGGERS:
            raise out_of_range()
        self._fire(f"int{int(value)}")

    def _start(self, ch: int) -> None:
        gen = self.gen[ch - 1]
        gen.armed = gen.continuous
        gen.started_at = self.world.now()
        if gen.mode == "fix":
            self.levels[ch - 1] = self.next_v[ch - 1]
            self.world.set_dc(ch, level_v=self.next_v[ch - 1])
            return
        self.world.run_dc_profile(ch, waveform(gen, gen.started_at))

    def _cycles_left(self, _a: str, s: tuple[str, ...]) -> str:
        gen = self.gen[self._ch(s) - 1]
        if gen.started_at is None:
            return "0"
        done = math.floor((self.world.now() - gen.started_at) / gen.duration_s())
        if gen.repetitions < 0:
            return "-1"
        return str(max(0, gen.repetitions - done))

    def _abort(self, ch: int) -> None:
        gen = self.gen[ch - 1]
        gen.armed, gen.started_at = False, None
        self.world.run_dc_profile(ch, None)  # the output stays where the generator left it

    def _abort_channel(self, _a: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        self._abort(ch)
        self.waves.abort(ch)

    def _abort_all(self) -> None:
        for ch in range(1, N_DC_CHANNELS + 1):
            self._abort(ch)
            self.waves.abort(ch)

    def channel_of(self, suffixes: tuple[str, ...]) -> int:
        return self._ch(suffixes)

    def check_level(self, ch: int, volts: float) -> None:
        self._check_level(ch, volts)

    def _output(self, ch: int) -> float:
        return self.world.dc_output(ch)

    # ---- current measurement ----------------------------------------------------------------

    def _sense_tree(self) -> None:
        sens = "SENSe#"
        self.add("SENSe:RANGe", False, self._sense_list("current_range"))
        self.add("SENSe:NPLCycles", False, self._sense_list("nplc"))
        self.add("SENSe:APERture", False, self._sense_list("aperture_s"))
        self._sense_word(f"{sens}:RANGe", "current_range", {"LOW": "low", "HIGH": "high"})
        self._sense_number(f"{sens}:APERture", "aperture_s", (1e-4, 1.0))
        self._sense_number(f"{sens}:NPLCycles", "nplc", (0.01, 100.0))
        self._sense_number(f"{sens}:DELay", "delay_s", (0.0, 3600.0))
        self._sense_number(f"{sens}:COUNt", "count", (1, 1e8))
        self.add(f"{sens}:TRIGger:SOURce", False, self._sense_trigger)
        self.add(f"{sens}:INITiate[:IMMediate]", False, self._sense_init, args=False)
        self.add(f"{sens}:INITiate:CONTinuous", False, self._sense_continuous)
        self.add(f"{sens}:ABORt", False, lambda a, s: self.sense[self._ch(s) - 1].readings.clear())
        self.add(f"{sens}:NCLeft", True, lambda a, s: "0")
        self.add(
            f"{sens}:DATA:POINts", True, lambda a, s: str(len(self.sense[self._ch(s) - 1].readings))
        )
        self.add(f"{sens}:DATA:LAST", True, self._sense_last)
        self.add(f"{sens}:DATA:REMove", True, self._sense_remove)
        self.add("READ", True, self._read_list, args=True)
        self.add("READ#", True, lambda a, s: fmt_g(self._current(self._ch(s))))
        self.add("FETCh#", True, self._sense_remove)

    def _sense_number(self, pattern: str, attr: str, bounds: tuple[float, float]) -> None:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            value = parse_number(arg, ("S", "MS", "US"), minimum=bounds[0], maximum=bounds[1])
            setattr(self.sense[self._ch(s) - 1], attr, int(value) if attr == "count" else value)

        self.add(pattern, False, setter)
        self.add(pattern, True, lambda a, s: fmt_g(getattr(self.sense[self._ch(s) - 1], attr)))

    def _sense_word(self, pattern: str, attr: str, choices: dict[str, str]) -> None:
        def setter(arg: str, s: tuple[str, ...]) -> None:
            setattr(self.sense[self._ch(s) - 1], attr, parse_choice(arg, choices))

        self.add(pattern, False, setter)
        self.add(pattern, True, lambda a, s: getattr(self.sense[self._ch(s) - 1], attr))

    def _sense_list(self, attr: str):  # type: ignore[no-untyped-def]
        """`sens:rang low,(@1,2)`: a setting on several channels."""

        def setter(arg: str, _s: tuple[str, ...]) -> None:
            if "(@" not in arg:
                return self._sense_single(attr, arg)
            parts = split_args(arg)
            if len(parts) != 2:
                raise missing_parameter()
            channels = self._checked_channels(parts[1])
            if attr == "current_range":
                value: object = parse_choice(parts[0], {"LOW": "low", "HIGH": "high"})
            else:
                value = parse_number(parts[0], ("S", "MS", "US"), minimum=1e-4, maximum=100.0)
            for ch in channels:
                setattr(self.sense[ch - 1], attr, value)

        return setter

    def _sense_single(self, attr: str, arg: str) -> None:
        if attr == "current_range":
            self.sense[0].current_range = parse_choice(arg, {"LOW": "low", "HIGH": "high"})
        else:
            value = parse_number(arg, ("S", "MS", "US"), minimum=1e-4, maximum=100.0)
            setattr(self.sense[0], attr, value)

    def _checked_channels(self, arg: str) -> list[int]:
        channels = parse_channel_set(arg)
        if any(not 1 <= ch <= N_DC_CHANNELS for ch in channels):
            raise suffix_out_of_range()
        return channels

    def _sense_trigger(self, arg: str, s: tuple[str, ...]) -> None:
        self.sense[self._ch(s) - 1].trigger_source = self._word(arg, TRIGGER_SOURCES)

    def _sense_continuous(self, arg: str, s: tuple[str, ...]) -> None:
        self._ch(s)
        parse_bool(arg)  # measurements run on request in the simulation; the setting is checked

    def _sense_init(self, _a: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        sense = self.sense[ch - 1]
        sense.readings.extend(self._current(ch) for _ in range(sense.count))

    def _sense_last(self, _a: str, s: tuple[str, ...]) -> str:
        readings = self.sense[self._ch(s) - 1].readings
        return fmt_g(readings[-1] if readings else self._current(self._ch(s)))

    def _sense_remove(self, _a: str, s: tuple[str, ...]) -> str:
        sense = self.sense[self._ch(s) - 1]
        out, sense.readings = sense.readings, []
        return ",".join(fmt_g(v) for v in out)

    def _current(self, ch: int) -> float:
        """The electrodes are open (capacitive) loads: the reading is the meter's leakage noise;
        a measurement takes its aperture in world time."""
        sense = self.sense[ch - 1]
        self.world.advance(sense.aperture_s)
        return self._rng.gauss(0.0, CURRENT_NOISE_A[sense.current_range])

    def _read_list(self, arg: str, _s: tuple[str, ...]) -> str:
        channels = self._checked_channels(arg) if arg else list(range(1, N_DC_CHANNELS + 1))
        return ",".join(fmt_g(self._current(ch)) for ch in channels)

    def reset(self) -> None:
        """*RST: every channel 0 V at once (fixed mode, range high, filter high, generators and
        measurements stopped)."""
        for ch in range(1, N_DC_CHANNELS + 1):
            self.world.ramp_dc(ch, 0.0, 0.0, SLEW_RANGE[1])
        self._defaults()
        self.waves.reset()
