"""The script API (`ionpilot.connect`) against a driver host on the simulated lab: parameters,
describe, method calls, and limits that hold for scripts too (read back from the instrument)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvisa

import ionpilot
from ionpilot.bus.codec import BusError
from ionpilot.bus.hub import Hub
from ionpilot.config import LabConfig, load_config
from ionpilot.drivers.host import DriverHost, InstrumentSpec, open_spec
from ionpilot.sim.clock import VirtualClock
from ionpilot.sim.lab import Lab as SimLab
from ionpilot.sim.settings import SimSettings

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("rf_drive", "dc_electrodes")


@dataclasses.dataclass
class Running:
    config: LabConfig  # the lab file, re-pointed at the ports really bound
    sim: SimLab


@pytest.fixture
def running() -> Iterator[Running]:
    config = load_config(ROOT / "configs" / "sim-lab.yaml")
    instruments = {n: (config.instruments[n].model, config.instruments[n].address) for n in NAMES}
    sim = SimLab(instruments, SimSettings(seed=5), VirtualClock(), free_ports=True)
    resources = sim.start()
    hub = Hub(dataclasses.replace(config.bus, publish_port=0, subscribe_port=0)).start()
    bus = dataclasses.replace(
        config.bus,
        publish_port=int(hub.publish_endpoint.rsplit(":", 1)[1]),
        subscribe_port=int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
    )
    specs = [
        InstrumentSpec(
            name=n,
            model=config.instruments[n].model,
            address=resources[n],
            timeout_s=1.0,
            limits=config.instruments[n].limit_values(),
        )
        for n in NAMES
    ]
    host = DriverHost("drivers", specs, bus, "tcp://127.0.0.1:0", open_spec).start()
    try:
        deadline = time.monotonic() + 15
        while any(w.state != "connected" for w in host.workers.values()):
            assert time.monotonic() < deadline, {n: w.last_error for n, w in host.workers.items()}
            time.sleep(0.01)
        port = int(host.endpoint.rsplit(":", 1)[1])
        processes = dict(config.processes)
        processes["drivers"] = dataclasses.replace(processes["drivers"], command_port=port)
        instruments_config = {n: config.instruments[n] for n in NAMES}
        yield Running(
            dataclasses.replace(
                config, bus=bus, processes=processes, instruments=instruments_config
            ),
            sim,
        )
    finally:
        host.stop()
        hub.stop()
        sim.stop()


def sim_rf_power(sim: SimLab) -> float:
    """The RF level straight from the simulated instrument, bypassing ionpilot.

    Only the resource is closed: pyvisa-py hands every caller in a process the same resource
    manager, and closing it would close the driver host's sessions too.
    """
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(sim.resources()["rf_drive"], read_termination="\n")
    try:
        assert isinstance(inst, pyvisa.resources.MessageBasedResource)
        inst.timeout = 2000
        return float(inst.query("SOUR:POW?"))
    finally:
        inst.close()


def test_get_set_describe_through_the_script_api(running: Running) -> None:
    with ionpilot.connect(running.config, timeout=5.0) as lab:
        assert lab.rf_drive.power.set(2.0) == pytest.approx(2.0)
        assert lab.rf_drive.power.get() == pytest.approx(2.0)
        assert sim_rf_power(running.sim) == pytest.approx(2.0)
        lab.rf_drive.power(-1.5)  # QCoDeS style
        assert lab.rf_drive.power() == pytest.approx(-1.5)
        lab["dc_electrodes"].ch01.voltage.set(0.25)
        assert lab.dc_electrodes.ch01.voltage.get() == pytest.approx(0.25)
        assert running.sim.world.dc[0].level_v == pytest.approx(0.25)
        info = lab.rf_drive.describe()
        assert info["parameters"]["power"]["unit"] == "dBm"
        assert info["parameters"]["power"]["allowed"] == [-30.0, 10.0]
        assert lab.rf_drive.call("errors") == []
        status = lab.call("drivers", "status")
        assert set(status["instruments"]) == set(NAMES)
        assert "rf_drive" in lab.targets and "rf_drive" in dir(lab)


def test_out_of_limit_set_is_refused_and_the_instrument_unchanged(running: Running) -> None:
    before = sim_rf_power(running.sim)
    with ionpilot.connect(running.config, timeout=5.0) as lab:
        with pytest.raises(BusError) as refused:
            lab.rf_drive.power.set(15.0)  # the lab allows 10 dBm of the SMB100A's 30
        assert refused.value.code == "out_of_limits"
        with pytest.raises(BusError) as refused:
            lab.call("rf_drive", "set", {"name": "power", "value": 25.0})
        assert refused.value.code == "out_of_limits"
        assert lab.rf_drive.power.get() == pytest.approx(before)
    assert sim_rf_power(running.sim) == before


def test_errors_carry_their_stable_codes(running: Running) -> None:
    lab = ionpilot.connect(running.config, timeout=5.0)
    with lab:
        with pytest.raises(BusError) as refused:
            lab.instrument("no_such_thing")
        assert refused.value.code == "unknown_target"
        with pytest.raises(AttributeError):
            _ = lab.no_such_thing
        with pytest.raises(BusError) as refused:
            lab.rf_drive.call("write", "OUTP OFF")
        assert refused.value.code == "forbidden"
        with pytest.raises(BusError) as refused:
            lab.rf_drive.no_such_parameter.get()
        assert refused.value.code == "bad_request"
    with pytest.raises(BusError):  # closed: no new connections
        lab.rf_drive.power.get()


def test_import_ionpilot_stays_cheap() -> None:
    code = (
        "import sys, ionpilot\n"
        "assert 'zmq' not in sys.modules and 'ionpilot.script' not in sys.modules\n"
        "from ionpilot import connect\n"
        "import ionpilot.script\n"
        "assert connect is ionpilot.script.connect and ionpilot.Lab is ionpilot.script.Lab\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
