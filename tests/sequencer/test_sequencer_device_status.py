"""The device description reads the lab: calibrations from the record (measured or as
configured, due after their validity -> NEEDSCALIBRATION), and the status from the daemon's and
the sequencer service's replies on the bus (stand-in responders here, in this process)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labprocs import SIM_LAB, lab_on_free_ports  # type: ignore[import-not-found]

from ionpilot.bus.codec import Request
from ionpilot.bus.server import CommandServer
from ionpilot.cli import main
from ionpilot.config import ConfigError, load_config
from ionpilot.core.clock import ManualClock
from ionpilot.sequencer.calibrations import CalibrationStore
from ionpilot.sequencer.device import describe_device
from ionpilot.sequencer.device_status import status_from_replies
from ionpilot.sequencer.settings import DeviceSettings

T0 = 1_800_000_000.0  # 2027-01-15, Unix seconds
HOUR = 3600.0


def test_calibrations_feed_the_device_and_age_into_needs_calibration(tmp_path: Path) -> None:
    device = DeviceSettings(calibration_validity={"ms_fidelity": 12 * HOUR})
    store = CalibrationStore(tmp_path, device.calibration_validity)
    clock = ManualClock(T0)
    store.record(
        "ms_fidelity", 0.982, 0.003, unit="", measured_s=clock.now(), source="ms-gate, run 7"
    )
    store.record("pi_time", 20.4e-6, 0.3e-6, unit="s", measured_s=clock.now(), source="rabi, run 6")

    clock.advance(11 * HOUR)  # within the validity
    doc = describe_device(device, calibrations=store.latest(), now_s=clock.now())
    std = doc["standardized"]
    assert std["twoQubitGateFidelity"][0]["fidelity"] == 0.982
    assert std["twoQubitGateFidelity"][0]["standardError"] == 0.003
    assert std["updatedAt"].startswith("2027-01-15T")
    assert doc["provider"]["properties"]["mean_two_qubit_gate_fidelity"] == pytest.approx(
        {"value": 98.2, "uncertainty": 0.3}
    )
    ms = doc["calibrations"]["msGateFidelity"]
    assert (
        ms["origin"] == "measured" and ms["measured_s"] == T0 and ms["source"] == "ms-gate, run 7"
    )
    assert doc["calibrations"]["recorded"]["pi_time"]["value"] == 20.4e-6
    # what no experiment measured is reported as configured, and says so
    readout = doc["calibrations"]["readoutFidelity"]
    assert readout["origin"] == "configured" and "not measured" in readout["note"]
    assert std["readoutFidelity"][0]["fidelity"] == device.spam_fidelity
    qdmi = doc["qdmi"]
    assert qdmi["operations"]["ms"]["QDMI_OPERATION_PROPERTY_FIDELITY"] == 0.982
    assert qdmi["operations"]["ms"]["fidelity"]["uncertainty"] == 0.003
    assert qdmi["operations"]["measure"]["fidelity"]["origin"] == "configured"
    assert qdmi["device"]["QDMI_DEVICE_PROPERTY_NEEDSCALIBRATION"] == 0

    clock.advance(2 * HOUR)  # 13 h: the MS calibration is due, the pi time (1 d) is not
    doc = describe_device(device, calibrations=store.latest(), now_s=clock.now())
    assert doc["qdmi"]["device"]["QDMI_DEVICE_PROPERTY_NEEDSCALIBRATION"] == 1
    assert doc["qdmi"]["device"]["needs_calibration"] == ["ms_fidelity"]
    assert doc["calibrations"]["msGateFidelity"]["needsCalibration"] is True
    assert doc["status"]["needsCalibration"] == ["ms_fidelity"]


def test_the_calibration_validity_in_the_lab_file_is_checked(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    head = f"include: {SIM_LAB}\nbus: {{security: {{curve: false}}}}\n"
    lab.write_text(head + "device:\n  calibration_validity: {ms_fidelty: 2 h}\n")
    with pytest.raises(ConfigError) as info:
        load_config(lab)
    text = str(info.value)
    assert (
        "lab.yaml:4" in text and "unknown quantity 'ms_fidelty'" in text and "ms_fidelity" in text
    )
    lab.write_text(head + "device: {calibration_validity: {pi_time: 2 h}}\n")
    assert load_config(lab).device.calibration_validity == {"pi_time": 7200.0}


@pytest.mark.parametrize(
    ("daemon", "jobs", "due", "state"),
    [
        ({"recovering": "", "safe_state": False}, {"held": False, "jobs": []}, [], "idle"),
        (
            {"recovering": "", "safe_state": False},
            {"held": False, "jobs": [{"state": "running"}, {"state": "queued"}]},
            [],
            "busy",
        ),
        (
            {"recovering": "", "safe_state": False},
            {"held": False, "jobs": []},
            ["ms"],
            "calibration",
        ),
        (
            {"recovering": "ion_loss", "safe_state": False},
            {"held": True, "jobs": []},
            [],
            "maintenance",
        ),
        ({"recovering": "", "safe_state": True}, {"held": False, "jobs": []}, [], "maintenance"),
        (
            {"recovering": "", "safe_state": False},
            {"held": True, "held_by": "op"},
            [],
            "maintenance",
        ),
    ],
)
def test_status_from_the_replies(
    daemon: dict[str, Any], jobs: dict[str, Any], due: list[str], state: str
) -> None:
    status = status_from_replies(daemon, jobs, due)
    assert status.state == state
    assert status.qdmi() == f"QDMI_DEVICE_STATUS_{state.upper()}"
    assert status.braket()["deviceStatus"] == "ONLINE"


class StandIn:
    """The daemon's `status` and the sequencer's `list` served on the lab file's ports."""

    def __init__(self, lab: Path) -> None:
        config = load_config(lab)
        self.daemon: dict[str, Any] = {"state": "locked", "recovering": "", "safe_state": False}
        self.sequencer: dict[str, Any] = {"held": False, "jobs": []}
        self.asked: list[dict[str, Any]] = []
        self.servers = []
        for process, method, reply in (
            ("daemon", "status", lambda: self.daemon),
            ("sequencer", "list", lambda: self.sequencer),
        ):
            server = CommandServer(process, config.bus)

            def handler(request: Request, reply: Any = reply) -> Any:
                self.asked.append(dict(request.args))
                return reply()

            server.register(process, method, handler)
            server.bind(f"tcp://127.0.0.1:{config.processes[process].command_port}")
            self.servers.append(server.start())

    def close(self) -> None:
        for server in self.servers:
            server.close()


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[tuple[Path, StandIn]]:
    lab = lab_on_free_ports(tmp_path, "device-status", secured=False)
    lab_responders = StandIn(lab)
    try:
        yield lab, lab_responders
    finally:
        lab_responders.close()


def _device_json(lab: Path, capsys: pytest.CaptureFixture[str], *more: str) -> dict[str, Any]:
    assert main(["device", "--json", "--config", str(lab), *more]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_the_device_status_is_read_from_the_bus(
    stand_in: tuple[Path, StandIn], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, lab_responders = stand_in
    doc = _device_json(lab, capsys)
    assert doc["status"]["state"] == "idle"
    assert doc["qdmi"]["device"]["QDMI_DEVICE_PROPERTY_STATUS"] == "QDMI_DEVICE_STATUS_IDLE"
    # only user jobs make the device busy: the sequencer is asked for those
    assert {"kind": "user"}.items() <= lab_responders.asked[-1].items()

    lab_responders.daemon["recovering"] = "ion_loss"
    lab_responders.sequencer = {"held": True, "held_by": "daemon", "jobs": [{"state": "queued"}]}
    doc = _device_json(lab, capsys)
    assert doc["status"]["state"] == "maintenance"
    assert "ion_loss" in doc["status"]["reason"]
    assert doc["status"]["braket"] == {
        "deviceStatus": "ONLINE",
        "deviceQueueInfo": [
            {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": "1", "queuePriority": "Normal"}
        ],
    }
    assert doc["qdmi"]["device"]["QDMI_DEVICE_PROPERTY_STATUS"] == "QDMI_DEVICE_STATUS_MAINTENANCE"

    lab_responders.close()  # the lab goes away: offline, said plainly, nothing invented
    doc = _device_json(lab, capsys)
    assert doc["status"]["state"] == "offline"
    assert "daemon did not answer" in doc["status"]["reason"]
    assert doc["status"]["braket"]["deviceStatus"] == "OFFLINE"
    assert _device_json(lab, capsys, "--offline")["status"]["state"] == "unknown"


def test_the_text_form_says_what_is_measured_and_what_is_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = lab_on_free_ports(tmp_path, "device-text", secured=False)
    store = CalibrationStore(load_config(lab).lab.data_dir)
    two_days_ago = time.time() - 2 * 86_400.0  # the CLI judges age on the wall clock
    store.record("readout_fidelity", 0.991, 0.002, unit="", measured_s=two_days_ago, source="run 2")
    assert main(["device", "--config", str(lab), "--offline"]) == 0
    out = capsys.readouterr().out
    assert "status: unknown (not asked (--offline))" in out
    assert "readoutFidelity: 0.991 +- 0.002 (measured 20" in out and "by run 2)" in out
    assert "msGateFidelity: 0.995 +- 0.001 (configured)" in out
    assert "needs calibration: readout_fidelity" in out  # valid 1 d by default
