"""Toptica DLC pro diode-laser controller, one laser head (DeCoF command line, TCP port 1998).

Wire dialect: `(param-ref 'laser1:dl:cc:current-act)` and
`(param-set! 'laser1:dl:pc:voltage-set 70.0)`, one per line. Each reply is one line followed by
the prompt `> ` with no terminator, so with read termination `\\n` every reply line arrives with
the previous prompt in front (`> 62.500000`); the driver strips it. On connect the controller
sends a banner line (`DeCoF Command Line`, ended by CR LF) that is read and discarded. Booleans
are `#t`/`#f`, `param-set!` answers `0`, errors are a line starting `Error:`.

Why not TOPTICA's SDK (`toptica-lasersdk`): it runs its own asyncio thread per client and has
no place for our guarded parameters, ramps, VISA timeouts and reconnects; the few DeCoF forms we
need are simpler to speak directly. The SDK is the test oracle of the simulated DLC pro instead.

Units: the controller speaks mA; this driver speaks SI (A) everywhere.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

import pyvisa
from qcodes.parameters import Parameter
from qcodes.validators import Bool

from ionpilot.drivers.base import (
    GuardedParameter,
    OwnedVisaInstrument,
    format_number,
    hardware_range,
    parse_float,
    parse_int,
)
from ionpilot.drivers.errors import InstrumentCommandError, InstrumentReplyError

MODEL = "dlc_pro"
PROMPT = ">"
_NAME_RE = re.compile(r"^[a-z0-9:\-]+$")
# A reply line may carry leading prompt(s) left over from earlier exchanges.
_LEADING_PROMPTS = re.compile(r"^(?:\s*>\s?)+")
_MAX_EMPTY_LINES = 8


def parse_decof_bool(reply: str) -> bool:
    """DeCoF boolean: `#t` or `#f`."""
    text = reply.strip()
    if text == "#t":
        return True
    if text == "#f":
        return False
    raise InstrumentReplyError(reply, "not a DeCoF boolean #t/#f")


def parse_decof_string(reply: str) -> str:
    """DeCoF string: double-quoted."""
    text = reply.strip()
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        raise InstrumentReplyError(reply, "not a DeCoF string")
    return text[1:-1]


def milliamps_to_amps(reply: str) -> float:
    """A current reply in mA as A."""
    return parse_float(reply) * 1e-3


class DlcPro(OwnedVisaInstrument):
    """DLC pro: diode current (A), piezo voltage (V), emission, cavity lock."""

    model_name: ClassVar[str] = MODEL
    default_terminator = "\n"
    bus_methods: ClassVar[tuple[str, ...]] = ("relock",)

    def __init__(
        self,
        name: str,
        address: str,
        *,
        laser: str = "laser1",
        read_banner: bool = True,
        current_step_a: float | None = None,
        current_step_delay_s: float = 0.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("device_clear", False)
        super().__init__(name, address, **kwargs)
        if not _NAME_RE.match(laser):
            raise ValueError(f"bad laser name {laser!r}")
        self._laser = laser
        if read_banner:
            self._read_banner()

        self.current: GuardedParameter = self.add_parameter(
            "current",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "current"),
            label="Diode current set-point",
            get_cmd=lambda: self.param_ref(f"{laser}:dl:cc:current-set"),
            get_parser=milliamps_to_amps,
            set_cmd=lambda amps: self.param_set(
                f"{laser}:dl:cc:current-set", format_number(amps * 1e3)
            ),
            step=current_step_a,
            inter_delay=current_step_delay_s,
            docstring="Diode current set-point (A; mA on the wire).",
        )
        """Diode current set-point (A; mA on the wire)."""

        self.current_act: Parameter = self.add_parameter(
            "current_act",
            label="Diode current",
            unit="A",
            get_cmd=lambda: self.param_ref(f"{laser}:dl:cc:current-act"),
            get_parser=milliamps_to_amps,
            docstring="Actual diode current (A); 0 when the current driver is disabled.",
        )
        """Actual diode current (A); 0 when the current driver is disabled."""

        self.piezo_voltage: GuardedParameter = self.add_parameter(
            "piezo_voltage",
            parameter_class=GuardedParameter,
            hardware=hardware_range(MODEL, "piezo_voltage"),
            label="Piezo voltage set-point",
            get_cmd=lambda: self.param_ref(f"{laser}:dl:pc:voltage-set"),
            get_parser=parse_float,
            set_cmd=lambda volts: self.param_set(
                f"{laser}:dl:pc:voltage-set", format_number(volts)
            ),
            docstring="Grating piezo voltage set-point (V): tunes the laser frequency.",
        )
        """Grating piezo voltage set-point (V): tunes the laser frequency."""

        self.piezo_voltage_act: Parameter = self.add_parameter(
            "piezo_voltage_act",
            label="Piezo voltage",
            unit="V",
            get_cmd=lambda: self.param_ref(f"{laser}:dl:pc:voltage-act"),
            get_parser=parse_float,
            docstring="Actual piezo voltage (V).",
        )
        """Actual piezo voltage (V)."""

        self.enabled: Parameter = self.add_parameter(
            "enabled",
            label="Current driver enabled",
            get_cmd=lambda: self.param_ref(f"{laser}:dl:cc:enabled"),
            get_parser=parse_decof_bool,
            set_cmd=lambda on: self.param_set(f"{laser}:dl:cc:enabled", "#t" if on else "#f"),
            vals=Bool(),
            docstring="Diode current driver on/off.",
        )
        """Diode current driver on/off."""

        self.emission: Parameter = self.add_parameter(
            "emission",
            label="Emission",
            get_cmd=lambda: self.param_ref(f"{laser}:emission"),
            get_parser=parse_decof_bool,
            docstring="Laser emitting (read-only).",
        )
        """Laser emitting (read-only)."""

        self.lock_enabled: Parameter = self.add_parameter(
            "lock_enabled",
            label="Cavity lock enabled",
            get_cmd=lambda: self.param_ref(f"{laser}:dl:lock:lock-enabled"),
            get_parser=parse_decof_bool,
            set_cmd=lambda on: self.param_set(
                f"{laser}:dl:lock:lock-enabled", "#t" if on else "#f"
            ),
            vals=Bool(),
            docstring="Cavity lock on/off; setting True (again) starts a relock.",
        )
        """Cavity lock on/off; setting True (again) starts a relock."""

        self.lock_state: Parameter = self.add_parameter(
            "lock_state",
            label="Cavity lock state",
            get_cmd=lambda: self.param_ref(f"{laser}:dl:lock:state"),
            get_parser=parse_int,
            docstring="0 not locked, 1 locking, 2 locked.",
        )
        """0 not locked, 1 locking, 2 locked."""

        self.connect_message()

    # --- wire ---------------------------------------------------------------------------------

    def get_idn(self) -> dict[str, str | None]:
        """Vendor, model (`system-type`), serial number and firmware version (`fw-ver`)."""
        return {
            "vendor": "TOPTICA",
            "model": parse_decof_string(self.param_ref("system-type")),
            "serial": parse_decof_string(self.param_ref("serial-number")),
            "firmware": parse_decof_string(self.param_ref("fw-ver")),
        }

    def param_ref(self, name: str) -> str:
        """The raw reply to `(param-ref 'name)`; an `Error:` reply raises."""
        _check_name(name)
        return self.ask(f"(param-ref '{name})")

    def param_set(self, name: str, literal: str) -> None:
        """`(param-set! 'name literal)`; anything but the success reply `0` raises."""
        _check_name(name)
        reply = self.ask(f"(param-set! '{name} {literal})")
        if reply.strip() != "0":
            raise InstrumentReplyError(reply, f"param-set! {name} did not answer 0")

    def ask_raw(self, cmd: str) -> str:
        """Send one command and return its reply line with leading prompt(s) stripped."""
        log = self.visa_log
        debug = log.isEnabledFor(logging.DEBUG)  # format debug lines only when they are wanted
        if debug:
            log.debug("Querying: %s", cmd)
        handle = self.visa_handle
        handle.write(cmd)
        for _ in range(_MAX_EMPTY_LINES):
            line = _LEADING_PROMPTS.sub("", handle.read()).strip()
            if line:
                if debug:
                    log.debug("Response: %s", line)
                if line.startswith("Error:"):
                    raise InstrumentCommandError(f"{self.name}: {cmd!r} -> {line!r}")
                return line
        raise InstrumentReplyError("", "only prompts, no reply line")

    def write_raw(self, cmd: str) -> None:
        """Every DeCoF command has a reply; read it so the stream stays in step."""
        self.ask_raw(cmd)

    def _read_banner(self) -> None:
        try:
            banner = self.visa_handle.read()
        except pyvisa.errors.VisaIOError as exc:
            raise InstrumentReplyError("", "no DeCoF banner after connect") from exc
        self.visa_log.debug(f"Banner: {banner!r}")

    # --- bus methods ----------------------------------------------------------------------------

    def relock(self) -> None:
        """Restart the cavity lock (sets lock-enabled #t, also when already #t)."""
        self.lock_enabled(True)


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"not a DeCoF parameter name: {name!r}")
