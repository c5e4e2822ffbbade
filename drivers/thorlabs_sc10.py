"""Thorlabs SC10 shutter controller over a serial line (9600 8N1, CR), reached with pyserial.

Each command is echoed, followed (for a query) by the value, each ended by CR, then the prompt
`> ` with no terminator: the driver reads up to the prompt and checks the echo. The controller
only toggles (`ens`), so opening or closing reads the state first and toggles only if needed,
then verifies. The address is any pyserial URL: `socket://host:port` for a serial-over-LAN
server (the simulated lab), or a device such as `/dev/ttyUSB0`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import serial
from qcodes.instrument import Instrument
from qcodes.parameters import Parameter
from qcodes.validators import Bool, Ints

from ionpilot.drivers.base import IonpilotDriver, parse_int
from ionpilot.drivers.errors import (
    InstrumentCommandError,
    InstrumentReplyError,
    InstrumentTimeoutError,
)

MODEL = "thorlabs_sc10"
PROMPT = b"> "
_REFUSALS = ("CMD_NOT_DEFINED", "CMD_ARG_INVALID")
_MANUAL_MODE = 1


def parse_enable(reply: str) -> bool:
    """`ens?` reply: `1` enabled (shutter open) or `0`."""
    value = parse_int(reply)
    if value not in (0, 1):
        raise InstrumentReplyError(reply, "ens? is not 0/1")
    return value == 1


class ThorlabsSc10(Instrument, IonpilotDriver):
    """SC10: shutter `open` (bool) and operating `mode` (1 manual ... 5 external gate)."""

    model_name: ClassVar[str] = MODEL
    bus_methods: ClassVar[tuple[str, ...]] = ("open_shutter", "close_shutter")

    def __init__(self, name: str, address: str, *, timeout_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._address = address
        self._serial: Any = None
        try:
            self._serial = serial.serial_for_url(
                address, baudrate=9600, timeout=timeout_s, write_timeout=timeout_s
            )
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise InstrumentTimeoutError(f"{name}: cannot open {address}: {exc}") from exc
        self._serial.reset_input_buffer()

        self.open: Parameter = self.add_parameter(
            "open",
            label="Shutter open",
            get_cmd=lambda: self.query("ens?"),
            get_parser=parse_enable,
            set_cmd=self._set_open,
            vals=Bool(),
            docstring="Shutter open (enabled) or closed.",
        )
        """Shutter open (enabled) or closed."""

        self.mode: Parameter = self.add_parameter(
            "mode",
            label="Operating mode",
            get_cmd=lambda: self.query("mode?"),
            get_parser=parse_int,
            set_cmd=lambda n: self.query(f"mode={int(n)}"),
            vals=Ints(1, 5),
            docstring="1 manual, 2 auto, 3 single, 4 repeat, 5 external gate.",
        )
        """1 manual, 2 auto, 3 single, 4 repeat, 5 external gate."""

        self.connect_message()

    def get_idn(self) -> dict[str, str | None]:
        """From `id?`, e.g. `THORLABS SC10 VERSION 1.07`."""
        reply = self.query("id?")
        words = reply.split()
        firmware = words[-1] if len(words) >= 2 and words[-2].upper() == "VERSION" else None
        return {"vendor": "Thorlabs", "model": "SC10", "serial": None, "firmware": firmware}

    def query(self, command: str) -> str:
        """Send one command; return its value line ('' for a command without one)."""
        if "\r" in command or "\n" in command:
            raise ValueError(f"command must be one line: {command!r}")
        if self.log.isEnabledFor(logging.DEBUG):  # formatted only when wanted
            self.log.debug("Querying: %s", command)
        try:
            self._serial.write(command.encode("ascii") + b"\r")
            data = self._serial.read_until(PROMPT)
        except (serial.SerialException, OSError) as exc:
            raise InstrumentTimeoutError(f"{self.name}: {command!r}: {exc}") from exc
        if not data.endswith(PROMPT):
            raise InstrumentTimeoutError(f"{self.name}: {command!r}: no prompt (got {data!r})")
        lines = [
            part.strip("\n") for part in data[: -len(PROMPT)].decode("ascii", "replace").split("\r")
        ]
        lines = [line for line in lines if line]
        if not lines or lines[0].strip() != command:
            raise InstrumentReplyError(data, f"echo of {command!r} missing")
        values = lines[1:]
        if values and values[0].strip() in _REFUSALS:
            raise InstrumentCommandError(f"{self.name}: {command!r} -> {values[0].strip()}")
        if len(values) > 1:
            raise InstrumentReplyError(data, "more than one value line")
        return values[0].strip() if values else ""

    def write_raw(self, cmd: str) -> None:
        """Every command is answered (echo + prompt); read it to stay in step."""
        self.query(cmd)

    def ask_raw(self, cmd: str) -> str:
        return self.query(cmd)

    def _set_open(self, want_open: bool) -> None:
        if parse_enable(self.query("ens?")) == want_open:
            return
        if parse_int(self.query("mode?")) != _MANUAL_MODE:
            self.query(f"mode={_MANUAL_MODE}")
        self.query("ens")
        if parse_enable(self.query("ens?")) != want_open:
            raise InstrumentCommandError(
                f"{self.name}: shutter did not {'open' if want_open else 'close'}"
            )

    def open_shutter(self) -> None:
        """Open the shutter (no-op if already open)."""
        self.open(True)

    def close_shutter(self) -> None:
        """Close the shutter (no-op if already closed)."""
        self.open(False)

    def close(self) -> None:
        """Release the serial line so a host can reopen it (the SC10 takes one connection)."""
        port = getattr(self, "_serial", None)
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass
            self._serial = None
        super().close()
