"""Menlo Systems FC1500 optical frequency comb, read over its XML-RPC data server (port 8123).

Not VISA: a plain QCoDeS instrument around `xmlrpc.client` with a socket timeout. The server
records about every second and answers `data.query(t, keys)` with the records after `t`, keyed
by their timestamp (`{"1700000000.0": {"reprate.freq": ...}}`); each reading asks for the newest
timestamp, then for the records since just before it, and uses the newest one (as Menlo's own
client examples and `brush` do). `readings()` returns all quantities of one record together
(use it when they must agree). No upstream driver to build on: `brush` is a logging web app
(Python 2 era, tornado) whose client class has no timeouts and no error mapping.
"""

from __future__ import annotations

import http.client
import math
import xmlrpc.client
from typing import Any, ClassVar, TypedDict
from xml.parsers.expat import ExpatError

from qcodes.instrument import Instrument
from qcodes.parameters import Parameter

from ionpilot.drivers.base import IonpilotDriver
from ionpilot.drivers.errors import (
    InstrumentCommandError,
    InstrumentReplyError,
    InstrumentTimeoutError,
)

MODEL = "menlo_fc1500"
KEY_REPRATE = "reprate.freq"
KEY_OFFSET = "offset.freq"
KEY_BEAT = "counter0.freq"
KEY_LOCKED = "system.locked"
ALL_KEYS = (KEY_REPRATE, KEY_OFFSET, KEY_BEAT, KEY_LOCKED)
# ask for the records since just before the newest timestamp (brush uses the same margin)
QUERY_MARGIN_S = 0.01


class CombReadings(TypedDict):
    """One comb record in SI units."""

    timestamp_s: float
    repetition_rate: float
    offset_frequency: float
    beat_frequency: float
    locked: bool


class _TimeoutTransport(xmlrpc.client.Transport):
    """HTTP transport whose connections time out (xmlrpc.client has no timeout of its own)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout_s
        return connection


def _number(record: Any, key: str) -> float:
    if not isinstance(record, dict) or key not in record:
        raise InstrumentReplyError(record, f"record has no {key!r}")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InstrumentReplyError(value, f"{key} is not a finite number")
    return float(value)


def _flag(record: Any, key: str) -> bool:
    if not isinstance(record, dict) or key not in record:
        raise InstrumentReplyError(record, f"record has no {key!r}")
    value = record[key]
    if not isinstance(value, bool):
        raise InstrumentReplyError(value, f"{key} is not a boolean")
    return value


def _newest(records: Any) -> tuple[float, Any]:
    """The newest of `{"<unix time>": {key: value}}` records."""
    if not isinstance(records, dict) or not records:
        raise InstrumentReplyError(records, "query returned no record")
    stamped: list[tuple[float, Any]] = []
    for key, record in records.items():
        try:
            stamp = float(key)
        except (TypeError, ValueError):
            raise InstrumentReplyError(key, "record key is not a timestamp") from None
        if not math.isfinite(stamp):
            raise InstrumentReplyError(key, "record key is not a finite timestamp")
        stamped.append((stamp, record))
    return max(stamped, key=lambda item: item[0])


class MenloFc1500(Instrument, IonpilotDriver):
    """FC1500: repetition rate, carrier-envelope offset, beat note (Hz) and lock state."""

    model_name: ClassVar[str] = MODEL
    bus_methods: ClassVar[tuple[str, ...]] = ("readings",)

    def __init__(self, name: str, address: str, *, timeout_s: float = 2.0, **kwargs: Any):
        super().__init__(name, **kwargs)
        if not address.startswith("http://"):
            raise ValueError(f"FC1500 address must be http://host:port/RPC2, not {address!r}")
        self._address = address
        self._transport = _TimeoutTransport(timeout_s)
        self._proxy: xmlrpc.client.ServerProxy | None = xmlrpc.client.ServerProxy(
            address, transport=self._transport
        )

        self.repetition_rate: Parameter = self.add_parameter(
            "repetition_rate",
            label="Repetition rate",
            unit="Hz",
            get_cmd=lambda: _number(self._record((KEY_REPRATE,))[1], KEY_REPRATE),
            docstring="Comb repetition rate f_rep (Hz).",
        )
        """Comb repetition rate f_rep (Hz)."""

        self.offset_frequency: Parameter = self.add_parameter(
            "offset_frequency",
            label="Offset frequency",
            unit="Hz",
            get_cmd=lambda: _number(self._record((KEY_OFFSET,))[1], KEY_OFFSET),
            docstring="Carrier-envelope offset frequency f_ceo (Hz).",
        )
        """Carrier-envelope offset frequency f_ceo (Hz)."""

        self.beat_frequency: Parameter = self.add_parameter(
            "beat_frequency",
            label="Clock-laser beat",
            unit="Hz",
            get_cmd=lambda: _number(self._record((KEY_BEAT,))[1], KEY_BEAT),
            docstring="Beat of the clock laser with the nearest comb tooth (Hz, 1 s gate).",
        )
        """Beat of the clock laser with the nearest comb tooth (Hz, 1 s gate)."""

        self.locked: Parameter = self.add_parameter(
            "locked",
            label="Comb locked",
            get_cmd=lambda: _flag(self._record((KEY_LOCKED,))[1], KEY_LOCKED),
            docstring="Comb fully locked (f_rep and f_ceo); if False the frequencies are "
            "meaningless.",
        )
        """Comb fully locked (f_rep and f_ceo)."""

        self.connect_message()

    def get_idn(self) -> dict[str, str | None]:
        """`hello()` names the server software (the firmware field); the model is fixed."""
        version = self._call("hello")
        firmware = version if isinstance(version, str) and version else None
        return {"vendor": "Menlo Systems", "model": "FC1500", "serial": None, "firmware": firmware}

    def readings(self) -> CombReadings:
        """All quantities of the newest record, together with its timestamp (Unix s)."""
        timestamp, record = self._record(ALL_KEYS)
        return {
            "timestamp_s": timestamp,
            "repetition_rate": _number(record, KEY_REPRATE),
            "offset_frequency": _number(record, KEY_OFFSET),
            "beat_frequency": _number(record, KEY_BEAT),
            "locked": _flag(record, KEY_LOCKED),
        }

    def _record(self, keys: tuple[str, ...]) -> tuple[float, Any]:
        """(timestamp, {key: value}) of the newest record."""
        timestamp = self._call("data.last_timestamp")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            raise InstrumentReplyError(timestamp, "last_timestamp is not a number")
        records = self._call("data.query", float(timestamp) - QUERY_MARGIN_S, list(keys))
        return _newest(records)

    def _call(self, method: str, *args: Any) -> Any:
        if self._proxy is None:
            raise InstrumentTimeoutError(f"{self.name}: closed")
        try:
            return getattr(self._proxy, method)(*args)
        except xmlrpc.client.Fault as fault:
            raise InstrumentCommandError(
                f"{self.name}: {method} fault {fault.faultCode}: {fault.faultString}"
            ) from fault
        except TimeoutError as exc:
            self._drop_connection()
            raise InstrumentTimeoutError(f"{self.name}: {method} timed out") from exc
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            self._drop_connection()
            raise InstrumentTimeoutError(f"{self.name}: {method}: {exc}") from exc
        except (xmlrpc.client.ResponseError, ExpatError) as exc:
            raise InstrumentReplyError(str(exc), "malformed XML-RPC response") from exc

    def _drop_connection(self) -> None:
        self._transport.close()

    def close(self) -> None:
        """Close the HTTP connection."""
        transport = getattr(self, "_transport", None)
        if transport is not None:
            transport.close()
        self._proxy = None
        super().close()
