"""Keysight 53230A counter on the clock-laser/comb beat note (PROTOCOLS.md §4)."""

from __future__ import annotations

from .base import (
    ScpiError,
    ScpiProtocol,
    command_error,
    out_of_range,
    parse_channel_list,
    parse_number,
)

GATE_RANGE_S = (1e-4, 1000.0)
NO_SIGNAL = "+9.910000000000000E+37"  # the instrument's NaN


def fmt_e(value: float) -> str:
    return f"{value:+.15E}"


class Keysight53230a(ScpiProtocol):
    idn = "Agilent Technologies,53230A,MY50001234,02.05-1519.666-1.19-4.15-127-155-35"
    no_error = '+0,"No error"'

    def setup(self) -> None:
        self.gate_s = 0.1
        self.channel = 1
        self.started_at: float | None = None
        self.add("CONFigure:FREQuency", False, self._configure)
        gate = "[SENSe]:FREQuency:GATE:TIME"
        self.add(gate, False, self._set_gate)
        self.add(gate, True, lambda a, s: fmt_e(self.gate_s))
        self.add("READ", True, lambda a, s: self._read())
        self.add("MEASure:FREQuency", True, self._measure)
        self.add("INITiate[:IMMediate]", False, self._initiate)
        self.add("FETCh", True, lambda a, s: self._fetch())

    def _configure(self, arg: str, _s: tuple[str, ...]) -> None:
        self.channel = parse_channel_list(arg)
        if self.channel not in (1, 2):
            raise out_of_range()

    def _set_gate(self, arg: str, _s: tuple[str, ...]) -> None:
        value = parse_number(arg, ("S", "MS", "US"))
        if not GATE_RANGE_S[0] <= value <= GATE_RANGE_S[1]:
            raise out_of_range()
        self.gate_s = value

    def _read(self) -> str:
        if self.channel != 1:
            self.world.advance(self.gate_s)
            return NO_SIGNAL
        return fmt_e(self.world.count_beat(self.gate_s))

    def _measure(self, arg: str, s: tuple[str, ...]) -> str:
        self._configure(arg, s)
        return self._read()

    def _initiate(self, arg: str, _s: tuple[str, ...]) -> None:
        if arg:
            raise command_error()
        self.started_at = self.world.now()

    def _fetch(self) -> str:
        if self.started_at is None:
            raise ScpiError(-230, "Data corrupt or stale")
        elapsed = self.world.now() - self.started_at
        self.started_at = None
        if elapsed < self.gate_s:
            self.world.advance(self.gate_s - elapsed)
        if self.channel != 1:
            return NO_SIGNAL
        return fmt_e(self.world.beat_now(self.gate_s))

    def reset(self) -> None:
        self.gate_s, self.channel, self.started_at = 0.1, 1, None
