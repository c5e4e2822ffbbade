"""The wavemeter's telemetry through the driver host: one topic per fibre-switch input, and every
reading under the input it was taken on, whether polled, measured or read off the routed input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from labprocs import live_lab  # type: ignore[import-not-found]

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import Telemetry
from ionpilot.bus.pubsub import Subscriber
from ionpilot.bus.settings import BusSettings
from ionpilot.config import load_config
from ionpilot.core.clock import ManualClock
from ionpilot.drivers.host import InstrumentSpec, InstrumentWorker
from ionpilot.sim.clock import VirtualClock
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import WAVEMETER_CHANNELS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "configs" / "sim-lab.yaml")


def _laser_of(topic: str) -> str:
    channel = int(topic.removeprefix("tlm.wavemeter.ch").split(".")[0])
    return WAVEMETER_CHANNELS[channel]


def test_wavemeter_readings_are_published_per_input() -> None:
    inst = CONFIG.instruments["wavemeter"]
    assert set(inst.poll) == {"ch1.frequency", "ch2.frequency", "ch3.frequency", "ch4.frequency"}
    seen: list[Telemetry] = []
    with (
        live_lab(
            ["wavemeter"],
            VirtualClock(),
            settings=SimSettings(seed=3),
            config=CONFIG,
            limits=False,
            poll={"wavemeter": {"ch1.frequency": 0.1, "ch2.frequency": 0.1}},
        ) as live,
        Subscriber(live.bus, prefixes=["tlm.wavemeter."]) as sub,
        CommandClient(live.bus, live.host.endpoint) as client,
    ):
        world = live.lab.world
        host = live.host

        def topics() -> set[str]:
            seen.extend(m for m in sub.drain() if isinstance(m, Telemetry))
            return {m.topic for m in seen}

        deadline = time.monotonic() + 15
        while not {"tlm.wavemeter.ch1.frequency", "tlm.wavemeter.ch2.frequency"} <= topics():
            assert time.monotonic() < deadline, host.workers["wavemeter"].last_error
            time.sleep(0.02)
        # a bus call's reading goes out under the input it was taken on
        hz = client.call("wavemeter", "call", {"name": "measure", "args": [4]})
        # so does a reading of whatever input is routed at the moment
        routed = client.call("wavemeter", "get", {"name": "frequency"})
        assert routed["unit"] == "Hz"
        deadline = time.monotonic() + 15
        while "tlm.wavemeter.ch4.frequency" not in topics():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        wanted = len(seen) + 4  # a few more polls, after the calls above
        while len(seen) < wanted:
            assert time.monotonic() < deadline
            topics()
            time.sleep(0.02)
        described = client.call("wavemeter", "describe", {})["parameters"]
        assert any(m.topic == "tlm.wavemeter.ch4.frequency" and m.value == hz for m in seen)
        assert routed["value"] in [m.value for m in seen]  # published, under some chN
        assert "tlm.wavemeter.frequency" not in {m.topic for m in seen}  # never nameless
        for m in seen:  # every number is the laser its topic names (1 MHz digit + 5 sigma)
            truth = world.laser_frequency_hz(_laser_of(m.topic))
            noise = world.settings.wavemeter.noise_ppm * 1e-6 * truth
            assert m.status == "OK" and m.unit == "Hz", m
            assert abs(m.value - truth) < 5 * noise + 1e6, (m.topic, m.value, truth)
        assert described["ch1.frequency"]["last"]["status"] == "OK"
        assert described["ch1.frequency"]["poll_s"] == 0.1
        assert "last" not in described["frequency"]  # its readings are filed by input


class _Box:
    """A connected instrument that has none of the parameters its poll names."""

    bus_methods = ()

    def parameter_by_path(self, path: str) -> Any:
        raise KeyError(path)

    def telemetry_parameters(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        pass


def test_a_poll_naming_no_parameter_is_reported_once_and_not_a_reconnect() -> None:
    worker = InstrumentWorker(
        InstrumentSpec("box", "qdac2", "TCPIP0::127.0.0.1::1::SOCKET", poll={"nothing": 0.01}),
        lambda spec: _Box(),  # type: ignore[arg-type, return-value]
        BusSettings(publish_port=1),  # nothing listens: telemetry is dropped, never blocks
        clock=ManualClock(),
    )
    events: list[tuple[str, str]] = []

    def event(kind: str, message: str, severity: str = "OK") -> None:
        events.append((kind, message))

    worker._event = event  # type: ignore[method-assign]
    worker._connect_or_wait()
    assert worker.state == "connected"
    worker._serve_once()  # due at once: polled, found missing, dropped from the schedule
    assert worker._due == {}
    assert worker.state == "connected" and worker.stats["reconnects"] == 0
    assert [kind for kind, _ in events] == ["connected", "instrument_error"]
    assert "nothing" in events[1][1]
    assert worker.readings["nothing"].status == "INVALID"
