"""QDevil QDAC-II 24-channel DC source: the trap's compensation electrodes (PROTOCOLS.md §2)."""

from __future__ import annotations

from ..world import N_DC_CHANNELS
from .base import (
    ScpiProtocol,
    channel_number,
    fmt_g,
    illegal_value,
    missing_parameter,
    out_of_range,
    parse_number,
)

RANGE_LIMIT_V = {"low": 2.0, "high": 10.0}
SLEW_RANGE = (0.01, 2e7)
FILTERS = ("dc", "med", "high")


class Qdac2(ScpiProtocol):
    idn = "QDevil, QDAC-II, 101, 13-1.57"

    def setup(self) -> None:
        self.ranges = ["high"] * N_DC_CHANNELS
        self.filters = ["high"] * N_DC_CHANNELS
        level = "SOURce#:VOLTage[:LEVel][:IMMediate][:AMPLitude]"
        self.add(level, False, self._set_level)
        self.add(level, True, lambda a, s: fmt_g(self.world.dc[self._ch(s) - 1].level_v))
        self.add(
            "SOURce#:VOLTage:LAST", True, lambda a, s: fmt_g(self.world.dc_output(self._ch(s)))
        )
        for slew in ("SOURce#:VOLTage:SLEW", "SOURce#:DC:VOLTage:SLEW"):
            self.add(slew, False, self._set_slew)
            self.add(slew, True, lambda a, s: fmt_g(self.world.dc[self._ch(s) - 1].slew_v_per_s))
        self.add("SOURce#:RANGe", False, self._set_range)
        self.add("SOURce#:RANGe", True, lambda a, s: self.ranges[self._ch(s) - 1])
        self.add("SOURce#:FILTer", False, self._set_filter)
        self.add("SOURce#:FILTer", True, lambda a, s: self.filters[self._ch(s) - 1])

    @staticmethod
    def _ch(suffixes: tuple[str, ...]) -> int:
        return channel_number(suffixes, N_DC_CHANNELS)

    def _set_level(self, arg: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        value = parse_number(arg, ("V", "MV"))
        if abs(value) > RANGE_LIMIT_V[self.ranges[ch - 1]]:
            raise out_of_range()
        self.world.set_dc(ch, level_v=value)

    def _set_slew(self, arg: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        value = parse_number(arg)
        if not SLEW_RANGE[0] <= value <= SLEW_RANGE[1]:
            raise out_of_range()
        self.world.set_dc(ch, slew_v_per_s=value)

    def _word(self, arg: str, allowed: tuple[str, ...]) -> str:
        word = arg.strip().lower()
        if not word:
            raise missing_parameter()
        if word not in allowed:
            raise illegal_value()
        return word

    def _set_range(self, arg: str, s: tuple[str, ...]) -> None:
        ch = self._ch(s)
        word = self._word(arg, tuple(RANGE_LIMIT_V))
        if abs(self.world.dc[ch - 1].level_v) > RANGE_LIMIT_V[word]:
            raise out_of_range()
        self.ranges[ch - 1] = word

    def _set_filter(self, arg: str, s: tuple[str, ...]) -> None:
        self.filters[self._ch(s) - 1] = self._word(arg, FILTERS)

    def reset(self) -> None:
        for ch in range(1, N_DC_CHANNELS + 1):
            self.world.set_dc(ch, level_v=0.0, slew_v_per_s=SLEW_RANGE[1])
        self.ranges = ["high"] * N_DC_CHANNELS
        self.filters = ["high"] * N_DC_CHANNELS
