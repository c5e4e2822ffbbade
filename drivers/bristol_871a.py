"""Bristol 871A wavemeter behind a multi-channel fibre switch (SCPI over telnet, port 23).

The wavemeter greets each connection with one banner line, which is read and discarded, and
serves one client at a time: the host holds a single connection. It reports THz, nm and mW;
this driver reports Hz, m and W (it sets those units at connect: another session may have
changed them). A reading of 0 (no light, emission off, calibrating) is an
invalid exposure and is refused as a bad reply, never published as a frequency.

`measure(channel)` switches the fibre switch and reads that input in one call, so a client
that owns no lock never reads a channel another client has just switched away from (the driver
host runs each call to completion on the instrument's one thread). Each input is also a channel
module, `ch1`..`ch8`, whose `frequency` is that measurement: poll `ch1.frequency` to watch the
laser on input 1. The plain `frequency`, `wavelength` and `power` read whatever input is routed
now; the driver knows which (it reads the route at connect and sets every switch itself, holding
the wavemeter's one connection), and `reading_name` files such a reading under that input
(`ch2.frequency`), so telemetry never carries a number under a name that does not say which laser.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, TypedDict

import pyvisa
from qcodes.instrument import ChannelList, InstrumentChannel
from qcodes.parameters import Parameter

from ionpilot.drivers.base import (
    GuardedParameter,
    ScpiVisaDriver,
    hardware_range,
    parse_float,
    parse_int,
)
from ionpilot.drivers.errors import InstrumentCommandError, InstrumentReplyError

MODEL = "bristol_871a"
# After a switch the light of the old input may still be in the exposure being taken: wait for
# the opto-mechanical switch to settle and for the running exposure to finish (the 871A measures
# continuously, up to 1 kHz) before any reading counts. Override per lab (`switch_settle_s=`).
SWITCH_SETTLE_S = 0.05
# Readings of the new input may still be invalid (automatic exposure adjusting to a new power
# level, a calibration in progress): retry this long before refusing.
EXPOSURE_TIMEOUT_S = 1.0
EXPOSURE_RETRY_S = 0.01


def _positive(value: float, reply: str) -> float:
    if value <= 0.0:
        raise InstrumentReplyError(reply, "invalid exposure (reading is 0)")
    return value


def parse_thz_as_hz(reply: str) -> float:
    """Frequency reply in THz, as Hz; 0 (invalid exposure) raises."""
    return _positive(parse_float(reply), reply) * 1e12


def parse_nm_as_m(reply: str) -> float:
    """Vacuum wavelength reply in nm, as m; 0 (invalid exposure) raises."""
    return _positive(parse_float(reply), reply) * 1e-9


def parse_mw_as_w(reply: str) -> float:
    """Power reply in mW, as W."""
    value = parse_float(reply)
    if value < 0.0:
        raise InstrumentReplyError(reply, "negative power")
    return value * 1e-3


class WavemeterReading(TypedDict):
    """One `:READ:ALL?` record in SI units."""

    index: int
    valid: bool
    wavelength_m: float
    power_w: float


#: the units this driver's parsers read (manual: UNIT subsystem); sent at every connect
UNITS_COMMANDS = (":UNIT:FREQ THZ", ":UNIT:WAV NM", ":UNIT:POW MW")
#: questionable-status bits that make a reading invalid: power (3) or wavelength (5) out of range
INVALID_EXPOSURE_BITS = (1 << 3) | (1 << 5)


class Bristol871aInput(InstrumentChannel["Bristol871a"]):
    """One fibre-switch input: the frequency of the laser on it, switched to and read."""

    def __init__(self, parent: Bristol871a, name: str, channel_number: int, **kwargs: Any):
        super().__init__(parent, name, **kwargs)
        self.channel_number = channel_number

        self.frequency: Parameter = self.add_parameter(
            "frequency",
            label=f"Input {channel_number} optical frequency",
            unit="Hz",
            get_cmd=lambda: parent.measure(channel_number),
            docstring="Optical frequency (Hz) of the laser on this input: the switch is routed "
            "here, settles, and the wavemeter is read (`measure`); the route stays here.",
        )
        """Optical frequency (Hz) of the laser on this input (switch, settle, read)."""


class Bristol871a(ScpiVisaDriver):
    """871A: frequency (Hz), wavelength (m), power (W) of the routed fibre-switch input, and
    each input's frequency as `ch1.frequency`..`ch8.frequency`."""

    model_name: ClassVar[str] = MODEL
    default_terminator = "\r\n"
    error_query: ClassVar[str] = ":SYST:ERR?"
    clear_command: ClassVar[str | None] = None
    bus_methods: ClassVar[tuple[str, ...]] = (
        "errors",
        "reset_errors",
        "calibrate",
        "read_all",
        "measure",
    )
    routed_parameters: ClassVar[frozenset[str]] = frozenset({"frequency", "wavelength", "power"})

    def __init__(
        self,
        name: str,
        address: str,
        *,
        read_banner: bool = True,
        switch_settle_s: float = SWITCH_SETTLE_S,
        exposure_timeout_s: float = EXPOSURE_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ):
        kwargs.setdefault("device_clear", False)
        super().__init__(name, address, **kwargs)
        self.switch_settle_s = switch_settle_s
        self.exposure_timeout_s = exposure_timeout_s
        self._sleep = sleep
        self._monotonic = monotonic
        if read_banner:
            try:
                banner = self.visa_handle.read()
            except pyvisa.errors.VisaIOError as exc:
                raise InstrumentReplyError("", "no banner after connect") from exc
            self.visa_log.debug(f"Banner: {banner!r}")

        self.switch_channel: GuardedParameter = self.add_parameter(
            "switch_channel",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "switch_channel"),
            integer=True,
            label="Fibre switch channel",
            get_cmd=":ROUT:CHAN?",
            get_parser=self._parse_route,
            set_cmd=self._set_route,
            docstring="Fibre-switch input routed to the wavemeter (1..8).",
        )
        """Fibre-switch input routed to the wavemeter (1..8)."""
        switch = hardware_range(MODEL, "switch_channel")
        self.routed_channel: int | None = None
        """The input routed now, as last read or set (None: not known)."""

        self.frequency: Parameter = self.add_parameter(
            "frequency",
            label="Optical frequency",
            unit="Hz",
            get_cmd=":MEAS:FREQ?",
            get_parser=parse_thz_as_hz,
            docstring="Optical frequency (Hz; THz on the wire) of the routed channel.",
        )
        """Optical frequency (Hz; THz on the wire) of the routed channel."""

        self.wavelength: Parameter = self.add_parameter(
            "wavelength",
            label="Vacuum wavelength",
            unit="m",
            get_cmd=":MEAS:WAV?",
            get_parser=parse_nm_as_m,
            docstring="Vacuum wavelength (m; nm on the wire) of the routed channel.",
        )
        """Vacuum wavelength (m; nm on the wire) of the routed channel."""

        self.power: Parameter = self.add_parameter(
            "power",
            label="Optical power",
            unit="W",
            get_cmd=":MEAS:POW?",
            get_parser=parse_mw_as_w,
            docstring="Optical power at the wavemeter input (W; mW on the wire).",
        )
        """Optical power at the wavemeter input (W; mW on the wire)."""

        inputs = ChannelList(self, "inputs", Bristol871aInput)
        for number in range(int(switch.minimum), int(switch.maximum) + 1):
            module = Bristol871aInput(self, f"ch{number}", number)
            inputs.append(module)
            self.add_submodule(f"ch{number}", module)
        self.inputs: ChannelList[Bristol871aInput] = self.add_submodule("inputs", inputs)
        """Every fibre-switch input, `ch1`..`ch8`."""

        self.reset_errors()
        # The units persist in the wavemeter across sessions: the parsers assume THz, nm and mW.
        for command in UNITS_COMMANDS[:-1]:
            self.write(command)
        self.checked_write(UNITS_COMMANDS[-1])  # one error read for the three
        try:  # which input the readings of the routed channel belong to
            self.switch_channel.get()
        except (InstrumentCommandError, InstrumentReplyError):
            pass  # no fibre switch: one input, and the plain names say it all
        self.connect_message()

    def _parse_route(self, reply: str) -> int:
        channel = parse_int(reply)
        self.routed_channel = channel
        return channel

    def _set_route(self, channel: int) -> None:
        try:
            self.checked_write(f":ROUT:CHAN {int(channel)}")
        except InstrumentCommandError:
            raise  # refused: the switch stayed where it was
        except BaseException:
            self.routed_channel = None  # it may or may not have moved
            raise
        self.routed_channel = int(channel)

    def channel(self, number: int) -> Bristol871aInput:
        """Fibre-switch input by its number (1..8)."""
        module = self.submodules.get(f"ch{number}")
        if not isinstance(module, Bristol871aInput):
            raise KeyError(f"the fibre switch has inputs 1..{len(self.inputs)}, not {number}")
        return module

    def reading_name(self, path: str) -> str:
        """A routed reading (`frequency`, `wavelength`, `power`) as the input it was taken on
        (`ch2.frequency`); other paths as they are."""
        routed = self.routed_channel
        if path in self.routed_parameters and routed is not None:
            return f"ch{routed}.{path}"
        return path

    def call_reading(self, method: str, args: list[Any]) -> str | None:
        """`measure(n)` returns a reading of `chN.frequency`."""
        if method == "measure" and len(args) == 1 and type(args[0]) is int:
            return f"ch{args[0]}.frequency"
        return None

    def read_all(self) -> WavemeterReading:
        """One `:READ:ALL?` record: reading index, validity, wavelength (m), power (W)."""
        reply = self.ask(":READ:ALL?")
        fields = reply.split(",")
        if len(fields) != 4:
            raise InstrumentReplyError(reply, "expected index,status,wavelength,power")
        status = parse_int(fields[1])  # the questionable-status register (manual: STAT:QUES)
        if not 0 <= status < 1 << 16:
            raise InstrumentReplyError(reply, "status is not a 16-bit register value")
        return {
            "index": parse_int(fields[0]),
            "valid": not status & INVALID_EXPOSURE_BITS,
            "wavelength_m": parse_float(fields[2]) * 1e-9,
            "power_w": parse_float(fields[3]) * 1e-3,
        }

    def measure(self, channel: int) -> float:
        """Route fibre-switch input `channel` to the wavemeter and return its frequency (Hz).

        An out-of-range channel is refused (OutOfLimitsError) before anything is sent. Waits
        `switch_settle_s` after the switch, then retries invalid exposures for up to
        `exposure_timeout_s`; a channel that stays dark (no light, emission off, calibrating)
        raises InstrumentCommandError: the instrument is fine, it has nothing to report.
        The switch stays on `channel` (the polled `frequency` then reads it).
        """
        if isinstance(channel, bool) or not isinstance(channel, int):
            raise TypeError(f"channel must be an int, not {type(channel).__name__}")
        self.switch_channel(channel)
        self._sleep(self.switch_settle_s)
        deadline = self._monotonic() + self.exposure_timeout_s
        while True:
            reply = self.ask(":MEAS:FREQ?")
            thz = parse_float(reply)
            if thz > 0.0:
                hz = thz * 1e12
                self.frequency.cache.set(hz)
                self.channel(channel).frequency.cache.set(hz)
                return hz
            if thz < 0.0:
                raise InstrumentReplyError(reply, "negative frequency")
            if self._monotonic() >= deadline:
                raise InstrumentCommandError(
                    f"{self.name}: channel {channel} gave no valid exposure within "
                    f"{self.exposure_timeout_s:g} s (no light, emission off or calibrating)"
                )
            self._sleep(EXPOSURE_RETRY_S)

    def calibrate(self) -> None:
        """Start the internal calibration (readings are invalid for about a second)."""
        self.checked_write(":SENS:CALI")
