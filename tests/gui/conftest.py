"""GUI tests: offscreen Qt, and a live simulated system in-process (lab, hub, driver host, the
simulated lab's fault target, a stand-in health monitor that takes acknowledgements)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ionpilot.bus import BusSettings, CommandServer, Directory, Hub, Publisher
from ionpilot.bus.codec import Request
from ionpilot.config import load_config
from ionpilot.drivers.host import DriverHost, InstrumentSpec, open_spec
from ionpilot.sim.clock import RealClock
from ionpilot.sim.lab import Lab
from ionpilot.sim.process import fault_handler

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("rf_drive", "laser_369", "oven", "beat_counter")


def hub_settings(base: BusSettings, hub: Hub) -> BusSettings:
    return dataclasses.replace(
        base,
        publish_port=int(hub.publish_endpoint.rsplit(":", 1)[1]),
        subscribe_port=int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
    )


@dataclasses.dataclass
class LiveSystem:
    lab: Lab
    host: DriverHost
    bus: BusSettings
    directory: Directory
    publisher: Publisher  # publishes as "daemon": synthetic servo and health messages
    acks: list[dict[str, Any]]


@pytest.fixture(scope="module")
def live() -> Iterator[LiveSystem]:
    config = load_config(ROOT / "configs" / "sim-lab.yaml")
    instruments = {n: (config.instruments[n].model, config.instruments[n].address) for n in NAMES}
    lab = Lab(instruments, config.sim, RealClock(1.0), free_ports=True)
    resources = lab.start()
    hub = Hub(dataclasses.replace(config.bus, publish_port=0, subscribe_port=0)).start()
    bus = hub_settings(config.bus, hub)
    specs = [
        InstrumentSpec(
            name=n,
            model=config.instruments[n].model,
            address=resources[n],
            timeout_s=1.0,
            limits=config.instruments[n].limit_values(),
            poll={"power": 0.3, "frequency": 0.5}
            if n == "rf_drive"
            else {k: 0.3 for k in config.instruments[n].poll},
        )
        for n in NAMES
    ]
    host = DriverHost("drivers", specs, bus, "tcp://127.0.0.1:0", open_spec).start()
    sim = CommandServer("sim", bus)
    sim.register("sim", "call", fault_handler(lab))
    sim_endpoint = sim.bind("tcp://127.0.0.1:0")
    sim.start()
    acks: list[dict[str, Any]] = []

    def ack(request: Request) -> Any:
        acks.append({"args": dict(request.args), "client": request.client})
        return {"acknowledged": request.args.get("name")}

    daemon = CommandServer("daemon", bus)
    daemon.register("daemon", "call", ack, inline=True)
    daemon_endpoint = daemon.bind("tcp://127.0.0.1:0")
    daemon.start()
    directory = Directory(
        {"drivers": host.endpoint, "sim": sim_endpoint, "daemon": daemon_endpoint},
        {n: "drivers" for n in NAMES},
    )
    publisher = Publisher(bus, "daemon")
    try:
        yield LiveSystem(lab, host, bus, directory, publisher, acks)
    finally:
        publisher.close()
        daemon.close()
        sim.close()
        host.stop()
        hub.stop()
        lab.stop()


@pytest.fixture
def console_factory(qtbot: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    from ionpilot.gui.app import build_console, ensure_app
    from ionpilot.gui.context import LabFacts

    ensure_app()
    made: list[Any] = []

    def make(bus: BusSettings, directory: Directory | None, **kwargs: Any) -> Any:
        facts = kwargs.pop("facts", None) or LabFacts(
            name="test-lab", processes=("sim", "drivers", "daemon"), qpn_coefficient=1e-15
        )
        console = build_console(bus, directory, facts, **kwargs)
        console.window.resize(1400, 900)
        console.window.show()
        qtbot.addWidget(console.window)
        made.append(console)
        return console

    yield make
    for console in made:
        console.close()
