"""The script API (`ionpilot.connect`) against a driver host on the simulated lab: parameters,
describe, method calls, and limits that hold for scripts too (read back from the instrument)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator

import pytest
from labprocs import live_lab, sim_rf_power

import ionpilot
from ionpilot.bus.codec import BusError
from ionpilot.config import LabConfig
from ionpilot.sim.clock import VirtualClock
from ionpilot.sim.lab import Lab as SimLab
from ionpilot.sim.settings import SimSettings

NAMES = ("rf_drive", "dc_electrodes")


@dataclasses.dataclass
class Running:
    config: LabConfig  # the lab file, re-pointed at the ports really bound
    sim: SimLab


@pytest.fixture
def running() -> Iterator[Running]:
    with live_lab(
        NAMES, VirtualClock(), settings=SimSettings(seed=5), timeout_s=1.0, connected_within_s=15
    ) as live:
        config = live.config
        port = int(live.host.endpoint.rsplit(":", 1)[1])
        processes = dict(config.processes)
        processes["drivers"] = dataclasses.replace(processes["drivers"], command_port=port)
        instruments_config = {n: config.instruments[n] for n in NAMES}
        yield Running(
            dataclasses.replace(
                config, bus=live.bus, processes=processes, instruments=instruments_config
            ),
            live.lab,
        )


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
