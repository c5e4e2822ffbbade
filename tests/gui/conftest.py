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

from ionpilot.bus import BusSettings, CommandServer, Directory, Publisher
from ionpilot.bus.codec import Request
from ionpilot.drivers.host import DriverHost
from ionpilot.sim.clock import RealClock
from ionpilot.sim.lab import Lab
from ionpilot.sim.process import fault_handler

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "foundation"))
from audit_entries import AUDIT_ENTRIES  # type: ignore[import-not-found]
from labprocs import LiveLab, live_lab  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[2]


def _bus_fixtures() -> Any:
    """tests/bus/conftest.py under another module name: its hub and socket fixtures serve the
    Qt bus adapter's test here (gui/busqt.py moved out of bus/, its test with it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bus_fixtures", ROOT / "tests/bus/conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_BUS = _bus_fixtures()
ctx, dead_endpoint, settings, hub, join, bus = (
    _BUS.ctx,
    _BUS.dead_endpoint,
    _BUS.settings,
    _BUS.hub,
    _BUS.join,
    _BUS.bus,
)
NAMES = ("rf_drive", "laser_369", "oven", "beat_counter")


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
    with live_lab(
        NAMES,
        RealClock(1.0),
        timeout_s=1.0,
        poll={"rf_drive": {"power": 0.3, "frequency": 0.5}},
        poll_s=0.3,
    ) as running:
        yield from _with_servers(running)


def _with_servers(running: LiveLab) -> Iterator[LiveSystem]:
    """The live lab's fault target ("sim") and a health monitor stand-in ("daemon")."""
    lab, host, bus = running.lab, running.host, running.bus
    sim = CommandServer("sim", bus)
    sim.register("sim", "call", fault_handler(lab))
    sim_endpoint = sim.bind("tcp://127.0.0.1:0")
    sim.start()
    acks: list[dict[str, Any]] = []

    def ack(request: Request) -> Any:
        acks.append({"args": dict(request.args), "client": request.client})
        return {"acknowledged": request.args.get("name")}

    def audit(request: Request) -> Any:  # `get name=audit`: the daemon's audit trail
        if request.args.get("name") != "audit":
            return {"state": "locked"}
        return [dict(entry) for entry in AUDIT_ENTRIES]

    daemon = CommandServer("daemon", bus)
    daemon.register("daemon", "call", ack, inline=True)
    daemon.register("daemon", "get", audit, inline=True)
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
