"""`ionpilot experiment ms-gate` on the lab under `ionpilot up` (two ions): the Bell-state
fidelity of the MS gate and the pair's readout fidelity, recorded with their time stamps in the
lab's calibration record. (Before the ion-loss test: a reload brings back one ion.)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from uplab import UpLab, experiment

from ionpilot.cli import main
from ionpilot.config import load_config
from ionpilot.sequencer.calibrations import CalibrationStore


def test_ms_gate_measures_and_records_the_bell_fidelity(
    up_lab: UpLab, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.time()
    argv = ("ms-gate", "--points", "7", "--shots", "60")
    result = experiment(capsys, up_lab.lab_file, *argv)
    fidelity, error = result["ms_fidelity"], result["ms_fidelity_error"]
    assert isinstance(fidelity, float) and isinstance(error, float)
    # the simulated gate is exact; readout (a bright ion shows no photon in 0.25 % of shots)
    # and projection noise are what the measurement sees
    assert fidelity > 0.85 and 0 < error < 0.1, result
    config = load_config(up_lab.lab_file)
    recorded = CalibrationStore(config.lab.data_dir).get("ms_fidelity")
    assert recorded is not None and recorded.value == pytest.approx(min(fidelity, 1.0))
    assert started <= recorded.measured_s <= time.time()
    readout = CalibrationStore(config.lab.data_dir).get("readout_fidelity")
    assert readout is not None and readout.value > 0.9 and readout.measured_s >= started

    # the device description reports the fit with its time stamp, and the same record aged past
    # a validity shorter than its age sets QDMI NEEDSCALIBRATION
    shown = _device_json(capsys, up_lab.lab_file)
    ms = shown["calibrations"]["msGateFidelity"]
    assert ms["origin"] == "measured" and ms["value"] == pytest.approx(recorded.value)
    assert ms["measured_s"] == pytest.approx(recorded.measured_s) and ms["measuredAt"]
    assert ms["needsCalibration"] is False
    assert shown["qdmi"]["device"]["QDMI_DEVICE_PROPERTY_NEEDSCALIBRATION"] == 0
    aged = up_lab.lab_file.parent / "lab-ms-aged.yaml"
    aged.write_text(
        f"include: {up_lab.lab_file}\ndevice: {{calibration_validity: {{ms_fidelity: 1 ms}}}}\n"
    )
    shown = _device_json(capsys, aged)
    assert shown["calibrations"]["msGateFidelity"]["needsCalibration"] is True
    assert shown["calibrations"]["needsCalibration"] == ["ms_fidelity"]
    assert shown["qdmi"]["device"]["QDMI_DEVICE_PROPERTY_NEEDSCALIBRATION"] == 1


def _device_json(capsys: pytest.CaptureFixture[str], lab_file: Path) -> dict[str, Any]:
    """`ionpilot device --json --offline --config LAB` (the record, not the live status)."""
    assert main(["device", "--json", "--offline", "--config", str(lab_file)]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_ms_gate_on_ions_the_chain_lacks_is_refused(
    up_lab: UpLab, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["experiment", "ms-gate", "--ion_b", "5", "--config", str(up_lab.lab_file)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs ions 0 and 5 in the trap" in err and "chain of 5 ion(s)" in err
    assert "Traceback" not in err


def test_cooling_scan_finds_the_cooling_lasers_detuning(
    up_lab: UpLab, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cooling laser borrowed from its wavemeter lock and scanned on the red side: the
    Lorentzian's centre puts the lock's target at the simulated working detuning (-10 MHz)."""
    result = experiment(capsys, up_lab.lab_file, "cooling-scan", "--points", "13", "--shots", "10")
    config = load_config(up_lab.lab_file)
    truth = config.sim.ion.cooling_detuning
    detuning, error = result["cooling_detuning_hz"], result["cooling_detuning_error_hz"]
    # the error bar is mostly the frequency scale's (the line through the wavemeter's ±2 MHz
    # readings): 1.0-3.3 MHz over runs on the five-ion lab, against a 27 MHz wide line
    assert 0 < error < 5e6 and abs(detuning - truth) < 3 * error, result
    recorded = CalibrationStore(config.lab.data_dir).get("cooling_detuning")
    assert recorded is not None and recorded.value == pytest.approx(detuning)
    status = up_lab.lab.call("daemon", "status")
    assert isinstance(status, dict) and status["lent"] == {}

    def locking_again() -> bool:  # the lock thread takes the laser back between its steps
        status = up_lab.lab.call("daemon", "status")
        return isinstance(status, dict) and status["aux_locks"]["cooling"] != "stopped"

    assert up_lab.up.wait_until(locking_again, 20, 0.1)
