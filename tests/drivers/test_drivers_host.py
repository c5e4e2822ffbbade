"""The driver host against the running simulated lab: telemetry, limits on every path, and
instruments that hang, disconnect or answer garbage while the others carry on."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from drivertools import FakeInstrument
from labprocs import live_lab, sim_rf_power, wait_for  # type: ignore[import-not-found]

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError, Telemetry
from ionpilot.bus.pubsub import Subscriber
from ionpilot.bus.settings import BusSettings
from ionpilot.cli import main as cli_main
from ionpilot.drivers.host import DriverHost, InstrumentSpec
from ionpilot.sim.clock import RealClock
from ionpilot.sim.lab import Lab

NAMES = ("rf_drive", "laser_369", "dc_electrodes", "oven")


@dataclasses.dataclass
class LiveLab:
    lab: Lab
    host: DriverHost
    bus: BusSettings
    sub: Subscriber
    client: CommandClient
    latest: dict[str, Telemetry]

    def pump(self) -> None:
        for msg in self.sub.drain():
            if isinstance(msg, Telemetry):
                self.latest[msg.topic] = msg

    def fresh(self, topic: str, since_ns: int, status: str = "OK") -> bool:
        self.pump()
        msg = self.latest.get(topic)
        return msg is not None and msg.t > since_ns and msg.status == status


def _quick_backoff(host: DriverHost) -> None:
    for worker in host.workers.values():
        worker.backoff.initial = 0.1
        worker.backoff.maximum = 0.5


@pytest.fixture
def live() -> Iterator[LiveLab]:
    with (
        live_lab(
            NAMES,
            RealClock(1.0),
            timeout_s=1.0,
            poll={"rf_drive": {"power": 0.2, "frequency": 0.2}},
            poll_s=0.2,
            prepare=_quick_backoff,
        ) as running,
        Subscriber(running.bus, prefixes=["tlm.", "evt."]) as sub,
        CommandClient(running.bus, running.host.endpoint) as client,
    ):
        live = LiveLab(running.lab, running.host, running.bus, sub, client, {})
        specs = running.specs
        wait_for(
            lambda: all(
                live.fresh(f"tlm.{n}.{p}", 0) for n in NAMES for p in specs[NAMES.index(n)].poll
            )
        )
        yield live


def test_every_instrument_publishes_with_units(live: LiveLab) -> None:
    assert live.latest["tlm.rf_drive.frequency"].unit == "Hz"
    assert live.latest["tlm.rf_drive.power"].unit == "dBm"
    assert live.latest["tlm.dc_electrodes.ch01.voltage"].unit == "V"
    assert 20e6 <= live.latest["tlm.rf_drive.frequency"].value <= 40e6


def test_set_beyond_limit_is_refused_on_the_bus_and_changes_nothing(live: LiveLab) -> None:
    before = sim_rf_power(live.lab)
    with pytest.raises(BusError) as refused:
        live.client.call("rf_drive", "set", {"name": "power", "value": 15.0})
    assert refused.value.code == "out_of_limits"
    assert "power" in refused.value.message
    assert sim_rf_power(live.lab) == before
    # the same refusal through the operator's CLI
    code = cli_main(
        ["bus", "call", "rf_drive", "set", "power", "20", "--endpoint", live.host.endpoint]
    )
    assert code == 1
    assert sim_rf_power(live.lab) == before


def test_set_within_limit_reaches_the_instrument(live: LiveLab) -> None:
    reply = live.client.call("rf_drive", "set", {"name": "power", "value": 2.0})
    assert reply["value"] == pytest.approx(2.0)
    assert sim_rf_power(live.lab) == pytest.approx(2.0)


def test_bad_requests_are_refused_specifically(live: LiveLab) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"name": "write", "args": ["OUTP OFF"]}, "call", "forbidden"),
        ({"name": "nonexistent"}, "get", "bad_request"),
        ({"name": "power", "value": "loud"}, "set", "bad_request"),
        ({"name": "output"}, "set", "bad_request"),
    ]
    for args, method, code in cases:
        with pytest.raises(BusError) as refused:
            live.client.call("rf_drive", method, args)
        assert refused.value.code == code, (args, refused.value)


def test_describe_gives_units_limits_and_last_values(live: LiveLab) -> None:
    info = live.client.call("rf_drive", "describe", {})
    power = info["parameters"]["power"]
    assert power["unit"] == "dBm"
    assert power["allowed"] == [-30.0, 10.0]
    assert power["last"]["status"] == "OK"
    assert info["state"] == "connected"


@pytest.mark.parametrize("fault", ["instrument_disconnect", "instrument_hang", "garbage_reply"])
def test_faulty_instrument_goes_invalid_and_recovers_while_others_carry_on(
    live: LiveLab, fault: str
) -> None:
    live.lab.inject(fault, "rf_drive")
    t0 = time.time_ns()
    wait_for(lambda: live.fresh("tlm.rf_drive.power", t0, status="INVALID"), timeout=5.0)
    assert live.latest["tlm.rf_drive.power"].value is None  # never a wrong number
    t1 = time.time_ns()
    wait_for(lambda: live.fresh("tlm.laser_369.piezo_voltage", t1))  # the others carry on
    wait_for(lambda: live.fresh("tlm.oven.ch1.measured_current", t1))
    with pytest.raises(BusError) as refused:
        live.client.call("rf_drive", "get", {"name": "power"})
    assert refused.value.code in ("instrument_error", "instrument_timeout")
    live.lab.restore("rf_drive")
    t2 = time.time_ns()
    wait_for(lambda: live.fresh("tlm.rf_drive.power", t2), timeout=10.0)
    assert live.host.workers["rf_drive"].stats["reconnects"] >= 1
    assert live.client.call("rf_drive", "get", {"name": "power"})["unit"] == "dBm"


def test_a_command_that_waited_past_its_deadline_is_not_applied() -> None:
    from ionpilot.core.clock import ManualClock
    from ionpilot.drivers.host import InstrumentWorker, _Command

    fake = FakeInstrument()
    clock = ManualClock()
    bus = BusSettings(publish_port=1)  # nothing listens: telemetry is dropped, never blocks
    worker = InstrumentWorker(
        InstrumentSpec("box", "qdac2", "TCPIP0::127.0.0.1::1::SOCKET"),
        lambda spec: fake,  # type: ignore[arg-type, return-value]
        bus,
        clock=clock,
    ).start()
    try:
        wait_for(lambda: worker.state == "connected")
        stale = _Command("set", "voltage", value=2.0, deadline=clock.now() - 1.0)
        fresh = _Command("set", "voltage", value=3.0, deadline=clock.now() + 10.0)
        worker.submit(stale)
        worker.submit(fresh)
        with pytest.raises(BusError) as refused:
            stale.future.result(timeout=10)
        assert refused.value.code == "instrument_timeout"
        assert fresh.future.result(timeout=10)["value"] == 1.0
        assert fake.voltage.sets == [3.0]  # the late set never reached the instrument
    finally:
        worker.stop()


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="pinning needs Linux and two CPUs",
)
def test_the_host_threads_run_on_one_cpu_and_the_caller_keeps_its_own() -> None:
    from ionpilot.drivers.host import host_cpu

    mine = os.sched_getaffinity(0)
    cpu = max(mine)
    assert host_cpu(None) is None
    assert host_cpu("auto") == cpu
    with pytest.raises(ValueError):
        host_cpu(cpu + 1000)
    bus = BusSettings(publish_port=1, subscribe_port=2)  # nothing listens: telemetry dropped
    specs = [InstrumentSpec(f"box{n}", "qdac2", "TCPIP0::127.0.0.1::1::SOCKET") for n in (1, 2)]

    def opener(spec: InstrumentSpec) -> Any:
        return FakeInstrument()

    with DriverHost("pinned", specs, bus, "tcp://127.0.0.1:0", opener, cpu=cpu) as host:
        # the workers, the command server's socket thread and the heartbeat thread
        threads = [t for t in threading.enumerate() if t.name.endswith(("box1", "box2", "pinned"))]
        assert {"instrument-box1", "instrument-box2"} < {t.name for t in threads}
        assert len(threads) >= 4
        for thread in threads:
            assert thread.native_id is not None
            assert os.sched_getaffinity(thread.native_id) == {cpu}, thread.name
        assert os.sched_getaffinity(0) == mine
        assert host.cpu == cpu


def test_a_full_command_queue_refuses_at_once_with_busy() -> None:
    from ionpilot.drivers.host import COMMAND_QUEUE_DEPTH, InstrumentWorker, _Command

    worker = InstrumentWorker(
        InstrumentSpec("box", "qdac2", "TCPIP0::127.0.0.1::1::SOCKET"),
        lambda spec: FakeInstrument(),  # type: ignore[arg-type, return-value]
        BusSettings(publish_port=1),
    )
    worker.state = "connected"  # not started: nothing takes commands off the queue
    for _ in range(COMMAND_QUEUE_DEPTH):
        worker.submit(_Command("get", "voltage"))
    with pytest.raises(BusError) as refused:
        worker.submit(_Command("get", "voltage"))
    assert refused.value.code == "busy"
    assert worker._take(0.0) is not None  # one taken: room for one more
    worker.submit(_Command("get", "voltage"))
    with pytest.raises(BusError):
        worker.submit(_Command("get", "voltage"))
