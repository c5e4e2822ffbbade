"""Fault injection through the one API, the bus target `sim`, the CLI and scenario files."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import pyvisa
import yaml
from simclients import CONFIG, JsonClient, Sc10Client, lab_instruments, visa  # type: ignore[import-not-found]

from ionpilot.cli import main
from ionpilot.config import load_config
from ionpilot.sim.chain import IonChain, molmer_sorensen, rotation
from ionpilot.sim.lab import Lab
from ionpilot.sim.process import run_lab
from ionpilot.sim.scenario import load_scenario, schedule_scenario
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import FaultError, World


def test_hang_disconnect_garbage_and_restore(lab: Lab) -> None:
    res = lab.resources()
    rf = visa(res["rf_drive"], timeout_ms=300)
    assert rf.query("OUTP?") == "1"
    lab.inject("instrument_hang", "rf_drive")
    with pytest.raises(pyvisa.errors.VisaIOError):
        rf.query("OUTP?")
    lab.inject("restore", "rf_drive")
    rf.close()
    rf = visa(res["rf_drive"], timeout_ms=300)
    assert rf.query("OUTP?") == "1"
    lab.inject("garbage_reply", "rf_drive")
    with pytest.raises(ValueError):
        float(rf.query("FREQ?"))
    lab.restore("rf_drive")
    lab.inject("instrument_disconnect", "pulser")
    host, port = res["pulser"].removeprefix("tcp://").split(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2)
    lab.restore("pulser")
    client = JsonClient(res["pulser"])
    assert client.request("ping")["ok"]
    client.close()
    with pytest.raises(FaultError):
        lab.inject("instrument_hang", "no_such_instrument")


def test_one_client_limit_of_the_wavemeter(lab: Lab) -> None:
    address = lab.resources()["wavemeter"]
    first = visa(address, term="\r\n")
    assert first.read().startswith("Bristol")
    host, port = address.split("::")[1:3]
    second = socket.create_connection((host, int(port)), timeout=2)
    assert second.recv(100) == b""  # closed at once, no banner
    second.close()


def test_dark_state_is_cleared_by_the_repump_but_loss_is_not(lab: Lab) -> None:
    res = lab.resources()
    pulser = JsonClient(res["pulser"])
    shutter = Sc10Client(res["shutter_935"])

    def counts() -> int:
        return int(pulser.result("count", duration_s=0.1)["counts"])

    bright = counts()
    lab.inject("ion_dark")
    assert counts() < bright / 10
    shutter.command("ens")  # block the repump ...
    assert shutter.command("ens?")[1] == "0"
    shutter.command("ens")  # ... and unblock it
    assert counts() > bright / 2
    lab.inject("rf_trip")
    rf = visa(res["rf_drive"])
    assert rf.query("OUTP:STAT?") == "0"
    lab.world.advance(30)
    rf.write("OUTP:STAT 1")
    assert lab.world.ions_present() == 0  # 30 s without RF: the ion is gone
    assert counts() < bright / 10
    pulser.close()
    shutter.close()


def test_scenario_file_replays_faults_at_world_times(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text("- {at: 2 h, fault: ion_loss}\n- {at: 90 min, fault: rf_trip}\n")
    world = World(SimSettings(seed=5))
    schedule_scenario(world, load_scenario(path))
    world.advance(3600)
    assert world.rf_output and world.ions_present() == 1
    world.advance(3600 + 1)
    assert not world.rf_output and world.ions_present() == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {at: 1 h, fault: meteor}\n")
    with pytest.raises(ValueError, match="entry 1"):
        load_scenario(bad)
    shipped = Path(__file__).resolve().parents[2] / "sim" / "scenarios" / "day-of-faults.yaml"
    assert len(load_scenario(shipped)) > 5


def test_ms_gate_on_the_chain_makes_a_bell_state() -> None:
    chain = IonChain(3, __import__("numpy").random.default_rng(1))
    chain.apply_2q(molmer_sorensen(3.141592653589793 / 2, 0.0, 0.0), 0, 2)
    p = chain.probabilities().reshape(2, 2, 2)
    assert abs(p[0, 0, 0] - 0.5) < 1e-12 and abs(p[1, 0, 1] - 0.5) < 1e-12
    chain.reset()
    chain.apply_1q(rotation(3.141592653589793, 0.0), 1)
    assert abs(chain.excitation(1) - 1) < 1e-12 and chain.excitation(0) < 1e-12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_sim_process_prints_resources_and_takes_cli_faults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(CONFIG.read_text())
    data["processes"]["sim"]["command_port"] = free_port()
    config_path = tmp_path / "lab.yaml"
    config_path.write_text(yaml.safe_dump(data))
    config = load_config(config_path)
    lines: list[str] = []
    ready = threading.Event()
    stop = threading.Event()

    def out(line: str) -> None:
        lines.append(line)
        if line == "ready":
            ready.set()

    settings = SimSettings(seed=2, speed=1.0)
    port = config.processes["sim"].command_port
    thread = threading.Thread(
        target=run_lab,
        args=(lab_instruments(), settings),
        kwargs={
            "bus": config.bus,
            "command_port": port,
            "out": out,
            "stop": stop,
            "free_ports": True,
        },
    )
    thread.start()
    try:
        assert ready.wait(20)
        names = [line.split()[0] for line in lines[:-1]]
        assert names == list(lab_instruments()) and lines[-1] == "ready"
        pulser = JsonClient(dict(line.split() for line in lines[:-1])["pulser"])
        assert pulser.result("count", duration_s=0.05)["counts"] > 100
        assert main(["sim", "--config", str(config_path), "fault", "ion_loss"]) == 0
        assert "ion_loss: ions lost" in capsys.readouterr().out
        assert pulser.result("count", duration_s=0.05)["counts"] < 100
        assert main(["sim", "--config", str(config_path), "fault", "meteor"]) == 2
        assert "error: unknown fault" in capsys.readouterr().err
        # options after the verb too; a restore of nothing known is an error, not "done"
        assert main(["sim", "restore", "ion", "--config", str(config_path)]) == 0
        assert "restore ion: ions reloaded" in capsys.readouterr().out
        assert main(["sim", "fault", "ion_loss", "--config", str(config_path)]) == 0
        assert main(["sim", "restore", "nothing", "--config", str(config_path)]) == 2
        err = capsys.readouterr().err
        assert "error: nothing called 'nothing' to restore (instruments: " in err
        pulser.close()
    finally:
        stop.set()
        thread.join(10)
