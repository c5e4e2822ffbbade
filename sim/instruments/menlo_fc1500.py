"""Menlo FC1500 comb: the XML-RPC data server of its control software (PROTOCOLS.md §8).
`hello()`, `data.getInfo()`, `data.last_timestamp()` and `data.query(t, keys)`, which answers
the records after `t` as `{"<timestamp>": {key: value}}` (the last hour is kept; `t` < 0 means
the last -t seconds). The HTTP framing lives in the server; this is the method layer."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Callable
from typing import Any

from ..world import CombRecord
from .base import Protocol

VERSION = "Menlo Systems FiberComb XMLRPC server 2.4.1 (ionpilot simulation)"
COUNTER_CHANNELS = 4
LOCKBOX_LOCKED = 2  # lb*.status: 2 locked; the sim reports 0 while unlocked

# key -> (XML-RPC type name, description, value of one record)
KEYS: dict[str, tuple[str, str, Callable[[CombRecord], Any]]] = {
    "reprate.freq": ("double", "Repetition rate frequency (Hz)", lambda r: r.repetition_rate_hz),
    "offset.freq": ("double", "Carrier-envelope offset frequency (Hz)", lambda r: r.offset_frequency_hz),
    "system.locked": ("bool", "System locked (repetition rate and offset)", lambda r: r.locked),
    "counter.channels": ("int", "Number of counter channels", lambda r: COUNTER_CHANNELS),
    "counter0.freq": ("double", "Counter channel 0 frequency (Hz): clock-laser beat", lambda r: r.beat_hz),
    "counter1.freq": ("double", "Counter channel 1 frequency (Hz): no signal", lambda r: 0.0),
    "counter2.freq": ("double", "Counter channel 2 frequency (Hz): no signal", lambda r: 0.0),
    "counter3.freq": ("double", "Counter channel 3 frequency (Hz): no signal", lambda r: 0.0),
    "lb1.status": ("int", "Lockbox 1 (repetition rate) status, 2 = locked",
                   lambda r: LOCKBOX_LOCKED if r.locked else 0),
    "lb2.status": ("int", "Lockbox 2 (offset) status, 2 = locked",
                   lambda r: LOCKBOX_LOCKED if r.locked else 0),
    "lb1.mon": ("double", "Lockbox 1 monitor voltage (V)", lambda r: 0.0 if r.locked else 9.9),
    "lb2.mon": ("double", "Lockbox 2 monitor voltage (V)", lambda r: 0.0 if r.locked else 9.9),
}  # fmt: skip


class MenloComb(Protocol):
    transport = "http"

    def handle(self, line: str) -> bytes | None:
        """One XML-RPC request body -> the XML response body."""
        try:
            params, method = xmlrpc.client.loads(line)
        except Exception:  # malformed XML: a Fault, as the real server's library does
            return _fault(-32700, "parse error: not well formed")
        try:
            result = self._call(method, params)
        except _Fault as fault:
            return _fault(fault.code, fault.text)
        return xmlrpc.client.dumps((result,), methodresponse=True).encode("utf-8")

    def _call(self, method: str | None, params: tuple[Any, ...]) -> Any:
        if method == "hello" and not params:
            return VERSION
        if method == "data.getInfo" and not params:
            return {key: [kind, text] for key, (kind, text, _) in KEYS.items()}
        if method == "data.last_timestamp" and not params:
            return self.world.comb_last_timestamp()
        if method == "data.query" and len(params) in (1, 2):
            return self._query(params[0], params[1] if len(params) == 2 else [])
        if method in ("hello", "data.getInfo", "data.last_timestamp", "data.query"):
            raise _Fault(-32602, f"{method}: wrong number of arguments ({len(params)})")
        raise _Fault(-32601, f"method '{method}' not supported")

    def _query(self, t: object, keys: object) -> dict[str, dict[str, Any]]:
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise _Fault(3, "query(t, keys): t must be a number (Unix s, or < 0: last -t s)")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise _Fault(3, "query(t, keys): keys must be a list of strings")
        for key in keys:
            if key not in KEYS:
                raise _Fault(2, f"unknown key '{key}'")
        wanted = keys or list(KEYS)
        since = float(t)
        if since < 0:
            since = self.world.comb_last_timestamp() + since
        return {
            _stamp(record.timestamp): {key: KEYS[key][2](record) for key in wanted}
            for record in self.world.comb_records_after(since)
        }

    def garbage(self) -> bytes:
        return b"<?xml version='1.0'?>\n<methodResponse><#garbage"


def _stamp(timestamp: float) -> str:
    """A record's key: its Unix time as text (XML-RPC struct keys are strings)."""
    return repr(float(timestamp))


def _fault(code: int, text: str) -> bytes:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True)
    return body.replace("<int>", "<i4>").replace("</int>", "</i4>").encode()


class _Fault(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
