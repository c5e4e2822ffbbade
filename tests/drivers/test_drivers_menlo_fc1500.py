"""FC1500 driver against a loopback XML-RPC server replaying canned records in the data server's
dialect: `data.query(t, keys)` answers the records after `t` as {"<timestamp>": {key: value}}."""

import itertools
import threading
import time
from xmlrpc.server import SimpleXMLRPCServer

import pytest

from ionpilot.drivers.errors import (
    InstrumentCommandError,
    InstrumentReplyError,
    InstrumentTimeoutError,
)
from ionpilot.drivers.registry import open_instrument

_names = itertools.count()
T0 = 1_700_000_000.0
RECORD = {
    "reprate.freq": 250_000_123.5,
    "offset.freq": 20_000_000.0,
    "counter0.freq": 60_000_012.25,
    "system.locked": True,
}


class _Data:
    def __init__(self, record, delay_s=0.0):
        self.record = record
        self.delay_s = delay_s
        self.queries = []

    def hello(self):
        time.sleep(self.delay_s)
        return "canned comb server 1.0"

    def last_timestamp(self):
        time.sleep(self.delay_s)
        return T0

    def query(self, t, keys):
        import xmlrpc.client

        self.queries.append((t, list(keys)))
        for key in keys:
            if key not in self.record:
                raise xmlrpc.client.Fault(2, f"unknown key '{key}'")
        older = {**self.record, "reprate.freq": 1.0, "system.locked": False}
        records = {T0: self.record, T0 - 0.005: older}  # the driver must take the newest
        return {
            repr(ts): {key: rec[key] for key in (keys or rec)}
            for ts, rec in records.items()
            if ts > t
        }


@pytest.fixture
def server_for():
    servers = []

    def start(record=RECORD, delay_s=0.0):
        server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=False)
        data = _Data(record, delay_s)
        server.register_function(data.hello, "hello")
        server.register_function(data.last_timestamp, "data.last_timestamp")
        server.register_function(data.query, "data.query")
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/RPC2", data

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _open(address, timeout_s=2.0):
    return open_instrument(f"comb{next(_names)}", "menlo_fc1500", address, timeout_s=timeout_s)


def test_parameters_read_the_newest_record(server_for):
    address, data = server_for()
    comb = _open(address)
    try:
        assert comb.repetition_rate() == 250_000_123.5
        assert comb.offset_frequency() == 20e6
        assert comb.beat_frequency() == 60_000_012.25
        assert comb.locked() is True
        assert data.queries[-1] == (T0 - 0.01, ["system.locked"])
        assert comb.IDN()["firmware"] == "canned comb server 1.0"
        readings = comb.readings()
        assert readings["timestamp_s"] == T0 and readings["repetition_rate"] == 250_000_123.5
        assert set(comb.telemetry_parameters()) >= {"repetition_rate", "offset_frequency", "locked"}
    finally:
        comb.close()


@pytest.mark.parametrize(
    ("record", "name"),
    [
        ({**RECORD, "reprate.freq": "250 MHz"}, "repetition_rate"),
        ({**RECORD, "offset.freq": True}, "offset_frequency"),
        ({**RECORD, "system.locked": 1}, "locked"),
    ],
)
def test_bad_values_are_refused(server_for, record, name):
    address, _ = server_for(record)
    comb = _open(address)
    try:
        with pytest.raises(InstrumentReplyError):
            getattr(comb, name)()
    finally:
        comb.close()


def test_faults_are_command_errors(server_for):
    address, _ = server_for({"reprate.freq": 1.0})
    comb = _open(address)
    try:
        with pytest.raises(InstrumentCommandError, match="unknown key"):
            comb.locked()
    finally:
        comb.close()


def test_timeout(server_for):
    address, _ = server_for(delay_s=0.6)
    with pytest.raises(InstrumentTimeoutError):
        _open(address, timeout_s=0.2)


def test_bad_address():
    with pytest.raises(ValueError):
        _open("tcp://127.0.0.1:1")
