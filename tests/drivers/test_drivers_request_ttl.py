"""A request carries how long its sender waits (`ttl_s`): a set still queued behind a slow one
when its sender has given up is never applied — the sender would never learn that it was."""

from __future__ import annotations

import pytest
from drivertools import FakeInstrument
from labprocs import wait_for  # type: ignore[import-not-found]

from ionpilot.bus.codec import BusError, Request
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import ManualClock
from ionpilot.drivers.host import DriverHost, InstrumentSpec


def _set(rid: int, value: float, ttl_s: float | None) -> Request:
    return Request(rid, "set", "box", {"name": "voltage", "value": value}, "t", ttl_s=ttl_s)


def test_a_set_whose_sender_gave_up_is_not_applied_later() -> None:
    box = FakeInstrument(hold_first=True)
    clock = ManualClock()
    bus = BusSettings(publish_port=1, subscribe_port=2)  # nothing listens: telemetry dropped
    spec = InstrumentSpec("box", "qdac2", "TCPIP0::127.0.0.1::1::SOCKET", timeout_s=2.0)
    host = DriverHost("drivers", [spec], bus, "tcp://127.0.0.1:0", lambda s: box, clock=clock)  # type: ignore[arg-type, return-value]
    with host:
        wait_for(lambda: host.workers["box"].state == "connected")
        ramp = host._set(_set(1, 1.0, None))
        assert box.voltage.started.wait(10)
        impatient = host._set(_set(2, 2.0, 0.5))  # its sender waits 0.5 s
        patient = host._set(_set(3, 3.0, 5.0))  # within the host's own 7 s budget
        unbounded = host._set(_set(4, 4.0, None))  # the host's budget alone
        clock.advance(1.0)  # the impatient sender has given up
        box.voltage.release.set()
        assert ramp.result(10)["name"] == "voltage"
        with pytest.raises(BusError) as refused:
            impatient.result(10)
        assert refused.value.code == "instrument_timeout"
        assert patient.result(10)["name"] == unbounded.result(10)["name"] == "voltage"
    assert box.voltage.sets == [1.0, 3.0, 4.0]  # 2.0 never reached the instrument
