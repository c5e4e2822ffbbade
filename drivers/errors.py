"""Errors raised by ionpilot drivers, each with the stable bus error code it maps to.

The bus (written elsewhere) maps `code` straight into its `{code, message}` error replies, so a
refused set or an unparsable reply is never mistaken for a value.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base class of every error an ionpilot driver raises on purpose."""

    code = "instrument_error"


class InstrumentReplyError(DriverError):
    """The instrument answered something that does not parse: nothing is published or cached."""

    code = "instrument_error"

    def __init__(self, reply: object, reason: str) -> None:
        self.reply = reply
        self.reason = reason
        super().__init__(f"unexpected instrument reply {reply!r}: {reason}")


class InstrumentCommandError(DriverError):
    """The instrument refused a command (its own error queue or an `Error:` reply)."""

    code = "instrument_error"


class OutOfLimitsError(DriverError, ValueError):
    """A set-point outside the allowed range (safety limit ∩ hardware range); nothing was sent."""

    code = "out_of_limits"

    def __init__(
        self, parameter: str, value: object, allowed: tuple[float, float], unit: str
    ) -> None:
        self.parameter = parameter
        self.value = value
        self.allowed = allowed
        self.unit = unit
        lo, hi = allowed
        super().__init__(
            f"{parameter}: {value!r} {unit} is outside the allowed range [{lo:g}, {hi:g}] {unit}"
        )


class LimitsConfigError(DriverError, ValueError):
    """A configured limit is malformed, names no parameter, or would widen the hardware range."""

    code = "bad_request"


class InstrumentTimeoutError(DriverError):
    """No (complete) reply in time, or the connection dropped: close, back off, reconnect."""

    code = "instrument_timeout"
