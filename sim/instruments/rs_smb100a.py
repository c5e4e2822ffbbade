"""R&S SMB100A RF generator: the trap drive (PROTOCOLS.md §1).

Command tree and reset values after the SMB100A Operating Manual, chapter "Remote Control
Commands" (SOURce:FREQuency, :PHASe, :POWer, :PULM, :SWEep, OUTPut, TRIGger subsystems, common
commands). A frequency or level sweep moves the carrier in world time (staircase of `points`
steps of `dwell`), applied to the world at every exchange.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .scpi import (
    ScpiProtocol,
    fmt_g,
    parse_bool,
    parse_choice,
    parse_number,
    settings_conflict,
)

FREQUENCY_RANGE_HZ = (100e3, 6e9)
POWER_RANGE_DBM = (-145.0, 30.0)
PHASE_RANGE_DEG = (-720.0, 720.0)
DWELL_RANGE_S = (5e-3, 100.0)
PULSE_PERIOD_RANGE_S = (20e-9, 100.0)
PULSE_WIDTH_RANGE_S = (20e-9, 100.0)
#: *RST values (manual, per command): RF off, 1 GHz, -30 dBm; sweeps 100-500 MHz, 1 MHz, 10 ms
RST_FREQUENCY_HZ = 1e9
RST_POWER_DBM = -30.0
FREQ_UNITS = ("HZ", "KHZ", "MHZ", "GHZ")
TIME_UNITS = ("S", "MS", "US", "NS")
SWEEP_SOURCES = {
    "AUTO": "AUTO",
    "IMMediate": "IMM",
    "SINGle": "SING",
    "EXTernal": "EXT",
    "EAUTo": "EAUT",
}


@dataclass
class Sweep:
    """One sweep (frequency in Hz or level in dBm): start, stop, step, dwell, trigger mode."""

    start: float
    stop: float
    step: float
    dwell_s: float = 10e-3
    source: str = "AUTO"  # trigger source
    running_since: float | None = None  # world time the sweep was (re)started

    def points(self) -> int:
        span = abs(self.stop - self.start)
        return max(2, math.floor(span / self.step + 1e-9) + 1) if self.step > 0 else 2

    def value_at(self, t: float) -> float | None:
        """The swept value at world time t, or None when no sweep is running."""
        if self.running_since is None:
            return None
        index = math.floor((t - self.running_since) / self.dwell_s + 1e-12)
        n = self.points()
        if self.source == "AUTO":
            index %= n
        elif index >= n:
            self.running_since = None  # single sweep done: back to the start value
            return self.start
        sign = 1.0 if self.stop >= self.start else -1.0
        return min(self.start + sign * index * self.step, max(self.start, self.stop))


class Smb100a(ScpiProtocol):
    idn = "Rohde&Schwarz,SMB100A,1406.6000k03/180123,3.1.19.15-3.50.124.73"
    options = "SMB-B103,SMB-K21,SMB-K22,SMB-K23"

    def setup(self) -> None:
        self._defaults()
        sour = "[SOURce#]"
        self._frequency(sour)
        self._level(sour)
        self.add(f"{sour}:PHASe[:ADJust]", False, self._set_phase, max_suffix=1)
        self.add(f"{sour}:PHASe[:ADJust]", True, lambda a, s: fmt_g(self.phase_deg), max_suffix=1)
        self.add(f"{sour}:PHASe:REFerence", False, lambda a, s: self._phase_reference(a))
        self._pulse(sour)
        self.add("OUTPut#[:STATe]", False, self._set_output, max_suffix=1)
        self.add(
            "OUTPut#[:STATe]", True, lambda a, s: str(int(self.world_rf_output())), max_suffix=1
        )
        self.add("SYSTem:PRESet", False, lambda a, s: self.reset(), args=False)
        self.add("*TRG", False, lambda a, s: self._trigger_all(), args=False)

    def _defaults(self) -> None:
        self.phase_deg = 0.0
        self.frequency_mode = "CW"
        self.level_mode = "CW"
        self.fsweep = Sweep(100e6, 500e6, 1e6)
        self.lsweep = Sweep(-30.0, -10.0, 1.0)
        self.sweep_mode = "AUTO"
        self.sweep_spacing = "LIN"
        self.pulse_state = False
        self.pulse_source = "INT"
        self.pulse_polarity = "NORM"
        self.pulse_period_s = 10e-6
        self.pulse_width_s = 2e-6
        self.pulse_delay_s = 0.0
        self.pulse_trigger_mode = "AUTO"
        self.cw_frequency_hz = self.world.rf_frequency_hz
        self.cw_power_dbm = self.world.rf_power_dbm

    # ---- frequency and its sweep ------------------------------------------------------------

    def _frequency(self, sour: str) -> None:
        freq = f"{sour}:FREQuency[:CW]"
        for pattern in (freq, f"{sour}:FREQuency:FIXed"):
            self.add(pattern, False, self._set_frequency, max_suffix=1)
            self.add(pattern, True, lambda a, s: fmt_g(self.cw_frequency_hz), max_suffix=1)
        self.add(f"{sour}:FREQuency:MODE", False, self._set_frequency_mode, max_suffix=1)
        self.add(f"{sour}:FREQuency:MODE", True, lambda a, s: self.frequency_mode, max_suffix=1)
        sw = self.fsweep
        self._number(f"{sour}:FREQuency:STARt", "fsweep", "start", FREQUENCY_RANGE_HZ, FREQ_UNITS)
        self._number(f"{sour}:FREQuency:STOP", "fsweep", "stop", FREQUENCY_RANGE_HZ, FREQ_UNITS)
        self.add(f"{sour}:FREQuency:CENTer", False, self._set_center, max_suffix=1)
        self.add(
            f"{sour}:FREQuency:CENTer",
            True,
            lambda a, s: fmt_g((self.fsweep.start + self.fsweep.stop) / 2),
            max_suffix=1,
        )
        self.add(f"{sour}:FREQuency:SPAN", False, self._set_span, max_suffix=1)
        self.add(
            f"{sour}:FREQuency:SPAN",
            True,
            lambda a, s: fmt_g(abs(self.fsweep.stop - self.fsweep.start)),
            max_suffix=1,
        )
        base = f"{sour}:SWEep[:FREQuency]"
        self._number(f"{base}:STEP[:LINear]", "fsweep", "step", (0.01, 6e9), FREQ_UNITS)
        self._number(f"{base}:DWELl", "fsweep", "dwell_s", DWELL_RANGE_S, TIME_UNITS)
        self.add(f"{base}:POINts", False, self._set_points(sw), max_suffix=1)
        self.add(f"{base}:POINts", True, lambda a, s: str(self.fsweep.points()), max_suffix=1)
        self.add(f"{base}:MODE", False, self._set_sweep_mode, max_suffix=1)
        self.add(f"{base}:MODE", True, lambda a, s: self.sweep_mode, max_suffix=1)
        self.add(f"{base}:SPACing", False, self._set_spacing, max_suffix=1)
        self.add(f"{base}:SPACing", True, lambda a, s: self.sweep_spacing, max_suffix=1)
        self.add(f"{base}:RUNNing", True, lambda a, s: str(int(self._running(self.fsweep))))
        self.add(f"{sour}:SWEep:RESet[:ALL]", False, lambda a, s: self._restart(), args=False)
        for node in ("TRIGger#[:FSWeep]", "TRIGger#:SWEep"):
            self.add(f"{node}:SOURce", False, self._set_trigger_source("fsweep"), max_suffix=1)
            self.add(f"{node}:SOURce", True, lambda a, s: self.fsweep.source, max_suffix=1)
            self.add(
                f"{node}[:IMMediate]", False, lambda a, s: self._start(self.fsweep), args=False
            )

    # ---- level and its sweep ------------------------------------------------------------------

    def _level(self, sour: str) -> None:
        power = f"{sour}:POWer[:LEVel][:IMMediate][:AMPLitude]"
        self.add(power, False, self._set_power, max_suffix=1)
        self.add(power, True, lambda a, s: fmt_g(self.cw_power_dbm), max_suffix=1)
        self.add(f"{sour}:POWer:MODE", False, self._set_level_mode, max_suffix=1)
        self.add(f"{sour}:POWer:MODE", True, lambda a, s: self.level_mode, max_suffix=1)
        self._number(f"{sour}:POWer:STARt", "lsweep", "start", POWER_RANGE_DBM, ("DBM",))
        self._number(f"{sour}:POWer:STOP", "lsweep", "stop", POWER_RANGE_DBM, ("DBM",))
        base = f"{sour}:SWEep:POWer"
        self._number(f"{base}:STEP[:LOGarithmic]", "lsweep", "step", (0.01, 165.0), ("DB",))
        self._number(f"{base}:DWELl", "lsweep", "dwell_s", DWELL_RANGE_S, TIME_UNITS)
        self.add(f"{base}:POINts", False, self._set_points(self.lsweep), max_suffix=1)
        self.add(f"{base}:POINts", True, lambda a, s: str(self.lsweep.points()), max_suffix=1)
        self.add(f"{base}:RUNNing", True, lambda a, s: str(int(self._running(self.lsweep))))
        self.add("TRIGger#:PSWeep:SOURce", False, self._set_trigger_source("lsweep"))
        self.add("TRIGger#:PSWeep:SOURce", True, lambda a, s: self.lsweep.source)
        self.add(
            "TRIGger#:PSWeep[:IMMediate]", False, lambda a, s: self._start(self.lsweep), args=False
        )

    # ---- pulse modulation (option K23 pulse generator) --------------------------------------

    def _pulse(self, sour: str) -> None:
        pulm = f"{sour}:PULM"
        self.add(f"{pulm}:STATe", False, self._set_pulse_state, max_suffix=1)
        self.add(f"{pulm}:STATe", True, lambda a, s: str(int(self.pulse_state)), max_suffix=1)
        self._word(f"{pulm}:SOURce", "pulse_source", {"INTernal": "INT", "EXTernal": "EXT"})
        self._word(f"{pulm}:POLarity", "pulse_polarity", {"NORMal": "NORM", "INVerted": "INV"})
        self._word(
            f"{pulm}:TRIGger:MODE",
            "pulse_trigger_mode",
            {"AUTO": "AUTO", "EXTernal": "EXT", "EGATe": "EGAT"},
        )
        self._number(f"{pulm}:PERiod", None, "pulse_period_s", PULSE_PERIOD_RANGE_S, TIME_UNITS)
        self._number(f"{pulm}:WIDTh", None, "pulse_width_s", PULSE_WIDTH_RANGE_S, TIME_UNITS)
        self._number(f"{pulm}:DELay", None, "pulse_delay_s", (0.0, 100.0), TIME_UNITS)

    # ---- helpers --------------------------------------------------------------------------------

    def _number(
        self,
        pattern: str,
        holder: str | None,
        attr: str,
        bounds: tuple[float, float],
        units: tuple[str, ...],
    ) -> None:
        def target() -> object:
            return self if holder is None else getattr(self, holder)

        def setter(arg: str, _s: tuple[str, ...]) -> None:
            value = parse_number(arg, units, minimum=bounds[0], maximum=bounds[1])
            if attr == "pulse_width_s" and value >= self.pulse_period_s:
                raise settings_conflict()
            setattr(target(), attr, value)

        self.add(pattern, False, setter, max_suffix=1)
        self.add(pattern, True, lambda a, s: fmt_g(getattr(target(), attr)), max_suffix=1)

    def _word(self, pattern: str, attr: str, choices: dict[str, str]) -> None:
        def setter(arg: str, _s: tuple[str, ...]) -> None:
            setattr(self, attr, parse_choice(arg, choices))

        self.add(pattern, False, setter, max_suffix=1)
        self.add(pattern, True, lambda a, s: str(getattr(self, attr)), max_suffix=1)

    def _set_points(self, sweep: Sweep):  # type: ignore[no-untyped-def]
        def setter(arg: str, _s: tuple[str, ...]) -> None:
            value = parse_number(arg, minimum=2, maximum=1e9)
            if value != int(value):
                raise settings_conflict()
            sweep.step = abs(sweep.stop - sweep.start) / (int(value) - 1) or sweep.step

        return setter

    def _set_trigger_source(self, holder: str):  # type: ignore[no-untyped-def]
        def setter(arg: str, _s: tuple[str, ...]) -> None:
            sweep: Sweep = getattr(self, holder)
            sweep.source = parse_choice(arg, SWEEP_SOURCES)
            if sweep.source == "IMM":
                sweep.source = "AUTO"  # the manual: IMMediate is a synonym of AUTO
            self._restart()

        return setter

    def _running(self, sweep: Sweep) -> bool:
        self._apply_sweeps()
        return sweep.running_since is not None

    def world_rf_output(self) -> bool:
        self._apply_sweeps()
        self.world.ions_present()  # bring the world up to now (a trip may have happened)
        return self.world.rf_output

    def handle(self, line: str) -> bytes | None:
        self._apply_sweeps()
        reply = super().handle(line)
        self._apply_sweeps()
        return reply

    def _apply_sweeps(self) -> None:
        """Put the swept carrier on the world at the present world time (CW values are put
        there when set, so a fault or scenario acting on the world is not undone here)."""
        if self.frequency_mode != "SWE" and self.level_mode != "SWE":
            return
        now = self.world.now()
        frequency_hz = power_dbm = None
        if self.frequency_mode == "SWE":
            freq = self.fsweep.value_at(now)  # waiting for a trigger: at the start frequency
            frequency_hz = self.fsweep.start if freq is None else freq
        if self.level_mode == "SWE":
            level = self.lsweep.value_at(now)
            power_dbm = self.lsweep.start if level is None else level
        self.world.set_rf(frequency_hz=frequency_hz, power_dbm=power_dbm)

    def _start(self, sweep: Sweep) -> None:
        sweep.running_since = self.world.now()

    def _trigger_all(self) -> None:
        for sweep, mode in ((self.fsweep, self.frequency_mode), (self.lsweep, self.level_mode)):
            if mode == "SWE" and sweep.source in ("SING", "EXT", "EAUT"):
                self._start(sweep)

    def _restart(self) -> None:
        """A mode or trigger change: AUTO sweeps run from their start now, SINGLE ones wait."""
        for sweep, mode in ((self.fsweep, self.frequency_mode), (self.lsweep, self.level_mode)):
            auto = mode == "SWE" and sweep.source == "AUTO"
            sweep.running_since = self.world.now() if auto else None

    def _set_frequency(self, arg: str, _s: tuple[str, ...]) -> None:
        self.cw_frequency_hz = parse_number(
            arg,
            FREQ_UNITS,
            minimum=FREQUENCY_RANGE_HZ[0],
            maximum=FREQUENCY_RANGE_HZ[1],
            default=RST_FREQUENCY_HZ,
        )
        if self.frequency_mode == "CW":
            self.world.set_rf(frequency_hz=self.cw_frequency_hz)

    def _set_center(self, arg: str, _s: tuple[str, ...]) -> None:
        center = parse_number(arg, FREQ_UNITS, minimum=FREQUENCY_RANGE_HZ[0], maximum=6e9)
        half = abs(self.fsweep.stop - self.fsweep.start) / 2
        if center - half < FREQUENCY_RANGE_HZ[0] or center + half > FREQUENCY_RANGE_HZ[1]:
            raise settings_conflict()
        self.fsweep.start, self.fsweep.stop = center - half, center + half

    def _set_span(self, arg: str, _s: tuple[str, ...]) -> None:
        span = parse_number(arg, FREQ_UNITS, minimum=0.0, maximum=6e9)
        center = (self.fsweep.start + self.fsweep.stop) / 2
        if center - span / 2 < FREQUENCY_RANGE_HZ[0] or center + span / 2 > 6e9:
            raise settings_conflict()
        self.fsweep.start, self.fsweep.stop = center - span / 2, center + span / 2

    def _set_frequency_mode(self, arg: str, _s: tuple[str, ...]) -> None:
        mode = parse_choice(arg, {"CW": "CW", "FIXed": "CW", "SWEep": "SWE", "LIST": "LIST"})
        if mode == "LIST":
            raise settings_conflict()  # no list is loaded in the simulated unit
        self.frequency_mode = mode
        self._restart()
        if mode == "CW":
            self.world.set_rf(frequency_hz=self.cw_frequency_hz)

    def _set_level_mode(self, arg: str, _s: tuple[str, ...]) -> None:
        self.level_mode = parse_choice(arg, {"CW": "CW", "FIXed": "CW", "SWEep": "SWE"})
        self._restart()
        if self.level_mode == "CW":
            self.world.set_rf(power_dbm=self.cw_power_dbm)

    def _set_sweep_mode(self, arg: str, _s: tuple[str, ...]) -> None:
        self.sweep_mode = parse_choice(arg, {"AUTO": "AUTO", "MANual": "MAN", "STEP": "STEP"})

    def _set_spacing(self, arg: str, _s: tuple[str, ...]) -> None:
        self.sweep_spacing = parse_choice(arg, {"LINear": "LIN", "LOGarithmic": "LOG"})

    def _set_power(self, arg: str, _s: tuple[str, ...]) -> None:
        self.cw_power_dbm = parse_number(
            arg, ("DBM",), minimum=POWER_RANGE_DBM[0], maximum=POWER_RANGE_DBM[1]
        )
        if self.level_mode == "CW":
            self.world.set_rf(power_dbm=self.cw_power_dbm)

    def _set_phase(self, arg: str, _s: tuple[str, ...]) -> None:
        self.phase_deg = parse_number(
            arg, ("DEG",), minimum=PHASE_RANGE_DEG[0], maximum=PHASE_RANGE_DEG[1], default=0.0
        )

    def _phase_reference(self, arg: str) -> None:
        self.phase_deg = 0.0  # the present phase becomes the reference (manual: PHAS:REF)

    def _set_pulse_state(self, arg: str, _s: tuple[str, ...]) -> None:
        self.pulse_state = parse_bool(arg)

    def _set_output(self, arg: str, _s: tuple[str, ...]) -> None:
        self.world.set_rf(output=parse_bool(arg))

    def reset(self) -> None:
        """*RST (manual: reset values): RF off, 1 GHz, -30 dBm, CW mode, modulation off."""
        self.world.set_rf(output=False)
        self._defaults()
        self.cw_frequency_hz, self.cw_power_dbm = RST_FREQUENCY_HZ, RST_POWER_DBM
        self.world.set_rf(frequency_hz=RST_FREQUENCY_HZ, power_dbm=RST_POWER_DBM)
