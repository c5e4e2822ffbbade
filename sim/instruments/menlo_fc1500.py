"""Menlo FC1500 comb: XML-RPC `data.last_timestamp()` and `data.query(t, keys)`
(PROTOCOLS.md §8). The HTTP framing lives in the server; this is the method layer."""

from __future__ import annotations

import xmlrpc.client
from typing import Any

from .base import Protocol

KEYS = ("reprate.freq", "offset.freq", "counter0.freq", "system.locked")


class MenloComb(Protocol):
    transport = "http"

    def handle(self, line: str) -> bytes | None:
        """One XML-RPC request body -> the XML response body."""
        try:
            params, method = xmlrpc.client.loads(line)
        except Exception:  # malformed XML: a Fault, as the real server's library does
            return self._fault(-32700, "parse error: not well formed")
        try:
            if method == "data.last_timestamp" and not params:
                result: Any = self.world.comb_last_timestamp()
            elif method == "data.query" and len(params) == 2:
                result = self._query(params[0], params[1])
            else:
                return self._fault(-32601, f"method '{method}' not supported")
        except _Fault as fault:
            return self._fault(fault.code, fault.text)
        return xmlrpc.client.dumps((result,), methodresponse=True).encode("utf-8")

    def _query(self, t: object, keys: object) -> dict[str, object]:
        if not isinstance(t, int | float) or not isinstance(keys, list):
            raise _Fault(3, "query(t, keys) takes a number and a list of keys")
        for key in keys:
            if key not in KEYS:
                raise _Fault(2, f"unknown key '{key}'")
        record = self.world.comb_query(float(t))
        if record is None:
            raise _Fault(1, f"no data for timestamp {t}")
        values = {
            "reprate.freq": record.repetition_rate_hz,
            "offset.freq": record.offset_frequency_hz,
            "counter0.freq": record.beat_hz,
            "system.locked": record.locked,
        }
        return {key: values[key] for key in keys}

    @staticmethod
    def _fault(code: int, text: str) -> bytes:
        return xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True).encode()

    def garbage(self) -> bytes:
        return b"<?xml version='1.0'?>\n<methodResponse><#garbage"


class _Fault(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
