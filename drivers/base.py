"""Shared pieces of every ionpilot driver: guarded set-points, strict reply parsers, bus hooks.

Threading: QCoDeS instruments are not thread-safe. The driver host owns each instrument with exactly
one thread (its poll/command loop); nothing here takes locks. After a timeout the host must
`close()` the instrument (which releases the socket and, if it was the last user, the VISA resource
manager), back off, and construct a new one: QCoDeS has no in-place reconnect.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pyvisa
from qcodes.instrument import ChannelList, InstrumentBase, InstrumentModule, VisaInstrument
from qcodes.parameters import MultiChannelInstrumentParameter, Parameter
from qcodes.validators import Ints, Numbers

from ionpilot.drivers.errors import (
    InstrumentCommandError,
    InstrumentReplyError,
    LimitsConfigError,
    OutOfLimitsError,
)
from ionpilot.drivers.hardware import MODELS, HardwareRange

# Relative slack when comparing a configured limit with the hardware range: "150 mA" parsed to SI
# may be 0.15000000000000002, which must not count as wider than a 0.15 A hardware maximum.
_LIMIT_RTOL = 1e-9

_SCPI_NAN = 9.91e37  # SCPI "not a number": the instrument had nothing to measure
_FLOAT_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def hardware_range(model: str, parameter: str) -> HardwareRange:
    """The hardware range of `parameter` of `model`, from the one table in `hardware.py`."""
    return MODELS[model].parameters[parameter]


def format_number(value: float) -> str:
    """A float as the shortest plain decimal the instrument parses without losing resolution."""
    return f"{float(value):.15g}"


# --- strict reply parsers -------------------------------------------------------------------


def parse_float(reply: str) -> float:
    """A finite decimal number, nothing else (SCPI NaN 9.91E37 and junk raise)."""
    text = reply.strip()
    if not _FLOAT_RE.match(text):
        raise InstrumentReplyError(reply, "not a number")
    value = float(text)
    if not math.isfinite(value) or abs(value) >= _SCPI_NAN * 0.999:
        raise InstrumentReplyError(reply, "not a finite measurement")
    return value


def parse_int(reply: str) -> int:
    """A decimal integer (an optional sign), nothing else."""
    text = reply.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise InstrumentReplyError(reply, "not an integer")
    return int(text)


def parse_bool01(reply: str) -> bool:
    """SCPI boolean reply: `0`/`1` (also `ON`/`OFF`, which some firmware sends)."""
    text = reply.strip().upper()
    if text in ("1", "ON", "+1"):
        return True
    if text in ("0", "OFF", "+0"):
        return False
    raise InstrumentReplyError(reply, "not a boolean 0/1")


_SCPI_ERROR_RE = re.compile(r'^\s*([+-]?\d+)\s*,\s*"(.*)"\s*$')


def parse_scpi_error(reply: str) -> tuple[int, str]:
    """One `SYST:ERR?` entry: `-222,"Data out of range"` -> (-222, 'Data out of range')."""
    match = _SCPI_ERROR_RE.match(reply)
    if match is None:
        raise InstrumentReplyError(reply, "not a SCPI error-queue entry")
    return int(match.group(1)), match.group(2)


# --- guarded set-points ---------------------------------------------------------------------


class GuardedParameter(Parameter):
    """A settable number whose allowed range (hardware range ∩ safety limits) cannot be widened.

    The hardware range is also installed as the ordinary `vals` validator, so QCoDeS tooling sees
    it; but the guard does not live in `vals`: a station `limits:` entry or `param.vals = ...` that
    replaces or widens `vals` does not reach it. Every entry point runs the guard: `set`,
    `param(value)`, every intermediate ramp step (`step`/`inter_delay`), `set_raw`, channel-list
    sets (they call each channel's `set`). The allowed range only ever narrows (`narrow_limits`).

    A ramp that starts outside the allowed range (e.g. limits applied to an instrument already
    beyond them) may pass through values between the present value and an allowed target: it
    only ever moves back towards safety, never further out.
    """

    def __init__(
        self,
        name: str,
        *,
        hardware: HardwareRange,
        integer: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("unit", hardware.unit)
        validator: Numbers | Ints = (
            Ints(int(hardware.minimum), int(hardware.maximum))
            if integer
            else Numbers(hardware.minimum, hardware.maximum)
        )
        super().__init__(name, vals=validator, **kwargs)
        if self.scale is not None or self.offset is not None or self.val_mapping is not None:
            raise TypeError("GuardedParameter works in SI units: convert in set_cmd/get_parser")
        self._hardware = hardware
        self._allowed = (hardware.minimum, hardware.maximum)
        self._ramp_window: tuple[float, float] | None = None

        ramped_set = self.set
        raw_set = self.set_raw

        def guarded_set(value: Any, **set_kwargs: Any) -> None:
            self._ramp_window = None
            self._guard(value)
            try:
                ramped_set(value, **set_kwargs)
            finally:
                self._ramp_window = None

        def guarded_set_raw(value: Any, **set_kwargs: Any) -> None:
            self._guard(value)
            raw_set(value, **set_kwargs)

        self.set = guarded_set
        self.set_raw = guarded_set_raw  # type: ignore[method-assign]

    def hardware_range(self) -> tuple[float, float]:
        """The instrument's own settable range (datasheet, from `hardware.py`)."""
        return (self._hardware.minimum, self._hardware.maximum)

    def allowed_range(self) -> tuple[float, float]:
        """What a set may request now: the hardware range narrowed by every applied limit."""
        return self._allowed

    def narrow_limits(self, minimum: float, maximum: float) -> None:
        """Narrow the allowed range to [minimum, maximum] ∩ the present allowed range.

        Raises LimitsConfigError if the limit is inverted, wider than the hardware range, or
        leaves nothing allowed. Never widens.
        """
        hw_lo, hw_hi = self.hardware_range()
        unit = self.unit
        if not (math.isfinite(minimum) and math.isfinite(maximum)) or minimum > maximum:
            raise LimitsConfigError(
                f"{self.full_name}: limit [{minimum:g}, {maximum:g}] {unit} is not a range"
            )
        slack = _LIMIT_RTOL * max(abs(hw_lo), abs(hw_hi), 1e-300)
        if minimum < hw_lo - slack or maximum > hw_hi + slack:
            raise LimitsConfigError(
                f"{self.full_name}: limit [{minimum:g}, {maximum:g}] {unit} is wider than the "
                f"hardware range [{hw_lo:g}, {hw_hi:g}] {unit}"
            )
        lo = max(self._allowed[0], minimum, hw_lo)
        hi = min(self._allowed[1], maximum, hw_hi)
        if lo > hi:
            raise LimitsConfigError(
                f"{self.full_name}: limit [{minimum:g}, {maximum:g}] {unit} leaves nothing "
                f"allowed within [{self._allowed[0]:g}, {self._allowed[1]:g}] {unit}"
            )
        self._allowed = (lo, hi)

    def validate(self, value: Any) -> None:
        """The guard first (OutOfLimitsError), then the ordinary validators (type, hardware)."""
        self._guard(value)
        super().validate(value)

    def get_ramp_values(self, value: Any, step: Any = None) -> Any:
        """QCoDeS ramp steps; remembers the span so steps back into range are recognised."""
        values = super().get_ramp_values(value, step)
        if step is not None:
            start = self.get_latest()
            if _is_real(start) and _is_real(value):
                self._ramp_window = (min(start, value), max(start, value))
        return values

    def _guard(self, value: Any) -> None:
        if isinstance(value, bool):  # an int to Python and to QCoDeS' Numbers, never a set-point
            raise TypeError(
                f"{self.full_name}: {value!r} is a boolean, not a number of {self.unit or 'units'}"
            )
        if not _is_real(value):
            return  # the type validator rejects it with a TypeError
        lo, hi = self._allowed
        if lo <= value <= hi:
            return
        window = self._ramp_window
        if window is not None and window[0] <= value <= window[1]:
            return
        raise OutOfLimitsError(self.full_name, value, self._allowed, self.unit)


class GuardedMultiChannelParameter(MultiChannelInstrumentParameter[Any]):
    """Channel-list parameter that validates every channel before it sets any (all or nothing)."""

    def set_raw(self, value: Any) -> None:
        params = [chan.parameters[self._param_name] for chan in self._channels]
        values: list[Any]
        if isinstance(value, list | tuple) and len(value) == len(params):
            values = list(value)
        else:
            values = [value] * len(params)
        for param, val in zip(params, values, strict=True):
            param.validate(val)
        for param, val in zip(params, values, strict=True):
            param.set(val)


def _is_real(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return isinstance(float(value), float) and not isinstance(value, str)
    except (TypeError, ValueError):
        return False


_MAIN_THREAD = threading.main_thread()


# --- bus hooks --------------------------------------------------------------------------------

_NOT_TELEMETRY = frozenset({"IDN", "timeout"})


class IonpilotDriver(InstrumentBase):
    """Mixin with what the driver host needs: telemetry names, callable whitelist, parameter paths.

    `model_name` is the key in `hardware.MODELS`. `bus_methods` lists the only methods the bus may
    call (no private names, nothing else); `bus_callers` narrows some of them to the principals
    named (their authenticated identity on the bus), e.g. the pulser's `run` to the sequencer.
    """

    model_name: ClassVar[str] = ""
    bus_methods: ClassVar[tuple[str, ...]] = ()
    bus_callers: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Paths whose readings belong to something the path does not name (the wavemeter's routed
    # fibre input): their telemetry name comes from `reading_name` at each reading.
    routed_parameters: ClassVar[frozenset[str]] = frozenset()

    def reading_name(self, path: str) -> str:
        """The telemetry name of a reading of `path` just taken: `path` itself, unless the
        reading belongs to something the path does not name (see `routed_parameters`)."""
        return path

    def call_reading(self, method: str, args: list[Any]) -> str | None:
        """The parameter path of which a bus call's result is a reading (the host publishes it
        as that parameter's telemetry), or None when the result is not a reading."""
        return None

    def telemetry_parameters(self) -> tuple[str, ...]:
        """Readable parameters as bus names: `power`, `ch01.voltage`, ..."""
        return tuple(path for path, param in self._walk_parameters() if param.gettable)

    def guarded_parameters(self) -> dict[str, GuardedParameter]:
        """Every guarded set-point by bus name (`voltage` or `ch05.voltage`)."""
        return {
            path: param
            for path, param in self._walk_parameters()
            if isinstance(param, GuardedParameter)
        }

    def parameter_by_path(self, path: str) -> Parameter:
        """The parameter a bus name refers to (`frequency`, `ch01.voltage`); KeyError if none."""
        for candidate, param in self._walk_parameters():
            if candidate == path:
                return param
        raise KeyError(path)

    def channel_modules(self) -> tuple[InstrumentModule, ...]:
        """Per-channel submodules (those with a `channel_number`), in channel order."""
        found: list[InstrumentModule] = []
        for module in self.submodules.values():
            if isinstance(module, ChannelList):
                continue
            if isinstance(module, InstrumentModule) and hasattr(module, "channel_number"):
                found.append(module)
        return tuple(sorted(found, key=lambda m: int(m.channel_number)))

    def _walk_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name, param in self.parameters.items():
            if name not in _NOT_TELEMETRY and isinstance(param, Parameter):
                yield name, param
        for module in self.channel_modules():
            for name, param in module.parameters.items():
                if isinstance(param, Parameter):
                    yield f"{module.short_name}.{name}", param


class OwnedVisaInstrument(VisaInstrument, IonpilotDriver):
    """A VISA instrument whose `close()` also releases the resource manager when it was the
    last open resource, so a host can reconnect from scratch after a timeout.

    Its `ask_raw`/`write_raw` are QCoDeS' own except off the main thread (the driver host's
    owner threads): there QCoDeS' `DelayedKeyboardInterrupt` cannot defer Ctrl-C and only logs
    a debug line saying so, and the `Querying:`/`Response:` debug lines were formatted on every
    call even with debug logging off; together a quarter of a read's CPU. Off the main thread
    they go straight to the VISA handle, with the same debug lines when debug logging is on.
    """

    def ask_raw(self, cmd: str) -> str:
        """`visa_handle.query(cmd)`, as QCoDeS does it (main thread: QCoDeS' own code)."""
        if threading.current_thread() is _MAIN_THREAD:
            return super().ask_raw(cmd)
        log = self.visa_log
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            log.debug("Querying: %s", cmd)
        response: str = self.visa_handle.query(cmd)
        if debug:
            log.debug("Response: %s", response)
        return response

    def write_raw(self, cmd: str) -> None:
        """`visa_handle.write(cmd)`, as QCoDeS does it (main thread: QCoDeS' own code)."""
        if threading.current_thread() is _MAIN_THREAD:
            super().write_raw(cmd)
            return
        log = self.visa_log
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Writing: %s", cmd)
        self.visa_handle.write(cmd)

    def close(self) -> None:
        """Release the socket, and the resource manager if nothing else still uses it."""
        rm = None
        if getattr(self, "_visa_handle", None) is not None and self.visabackend == "py":
            rm = self.visa_handle.visalib.resource_manager
        super().close()
        if rm is not None:
            try:
                if not rm.list_opened_resources():
                    rm.close()
            except pyvisa.errors.Error:
                pass


class ScpiVisaDriver(OwnedVisaInstrument):
    """A SCPI instrument over VISA with an error queue (`SYST:ERR?`) checked after every set.

    A query the instrument refuses gets no reply: after the timeout the driver reads the error
    queue and raises InstrumentCommandError with the instrument's own message.
    """

    error_query: ClassVar[str] = "SYST:ERR?"
    clear_command: ClassVar[str | None] = "*CLS"
    max_error_reads: ClassVar[int] = 32
    bus_methods: ClassVar[tuple[str, ...]] = ("errors", "reset_errors")

    def ask_raw(self, cmd: str) -> str:
        """Query; a query the instrument refuses gets no reply (SCPI): after the timeout read
        one error-queue entry and raise InstrumentCommandError carrying it."""
        try:
            return super().ask_raw(cmd)
        except pyvisa.errors.VisaIOError as timeout:
            if timeout.error_code != pyvisa.constants.StatusCode.error_timeout:
                raise
            if cmd.strip().lower().lstrip(":") == self.error_query.lower().lstrip(":"):
                raise
            try:
                code, message = parse_scpi_error(super().ask_raw(self.error_query))
            except (pyvisa.errors.VisaIOError, InstrumentReplyError):
                raise timeout from None
            if code == 0:
                raise
            raise InstrumentCommandError(
                f"{self.name}: {cmd!r} refused: {code},{message!r}"
            ) from timeout

    def errors(self) -> list[str]:
        """Drain the instrument's error queue; returns `code,"message"` entries (empty: none)."""
        found: list[str] = []
        for _ in range(self.max_error_reads):
            code, message = parse_scpi_error(self.ask(self.error_query))
            if code == 0:
                break
            found.append(f'{code},"{message}"')
        return found

    def reset_errors(self) -> None:
        """Clear the error queue (`*CLS`, or by draining it where there is no `*CLS`)."""
        if self.clear_command is None:
            self.errors()
        else:
            self.write(self.clear_command)

    def checked_write(self, command: str) -> None:
        """Write a set command, then read one error-queue entry; raise if the instrument refused."""
        self.write(command)
        code, message = parse_scpi_error(self.ask(self.error_query))
        if code != 0:
            raise InstrumentCommandError(f"{self.name}: {command!r} refused: {code},{message!r}")

    def checked_setter(self, template: str) -> Callable[[float], None]:
        """A `set_cmd` that formats a number into `template` and checks the error queue."""

        def setter(value: float) -> None:
            self.checked_write(template.format(format_number(value)))

        return setter
