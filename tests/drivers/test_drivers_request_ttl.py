"""A request carries how long its sender waits (`ttl_s`): a set still queued behind a slow one
when its sender has given up is never applied — the sender would never learn that it was."""

from __future__ import annotations

import threading

import pytest
from labprocs import wait_for  # type: ignore[import-not-found]

from ionpilot.bus.clock import ManualClock
from ionpilot.bus.codec import BusError, Request
from ionpilot.bus.settings import BusSettings
from ionpilot.drivers.host import DriverHost, InstrumentSpec


class _SlowVoltage:
    """A set-point whose first set blocks until released (a long ramp ahead in the queue)."""

    unit = "V"
    settable = True

    def __init__(self) -> None:
        self.sets: list[object] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def set(self, value: object) -> None:
        if not self.sets:
            self.started.set()
            assert self.release.wait(30)
        self.sets.append(value)

    def get(self) -> float:
        return float(self.sets[-1]) if self.sets else 0.0  # type: ignore[arg-type]


class _Box:
    bus_methods = ()

    def __init__(self) -> None:
        self.voltage = _SlowVoltage()

    def parameter_by_path(self, path: str) -> _SlowVoltage:
        if path != "voltage":
            raise KeyError(path)
        return self.voltage

    def telemetry_parameters(self) -> tuple[str, ...]:
        return ("voltage",)

    def close(self) -> None:
        pass


def _set(rid: int, value: float, ttl_s: float | None) -> Request:
    return Request(rid, "set", "box", {"name": "voltage", "value": value}, "t", ttl_s=ttl_s)


def test_a_set_whose_sender_gave_up_is_not_applied_later() -> None:
    box = _Box()
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
        assert ramp.result(10)["value"] == 1.0
        with pytest.raises(BusError) as refused:
            impatient.result(10)
        assert refused.value.code == "instrument_timeout"
        assert patient.result(10)["value"] == 3.0
        assert unbounded.result(10)["value"] == 4.0
    assert box.voltage.sets == [1.0, 3.0, 4.0]  # 2.0 never reached the instrument
