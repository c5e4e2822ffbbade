"""The clock-line experiments on the lab under `ionpilot up`: `ionpilot experiment rabi --json` finds the simulated π time within 3σ, its dataset reads back with units and
snapshot, and the lab's calibration record holds it with its time stamp; `clock-line` finds the
World's clock transition within 3σ; the clock laser goes back to the lock after each."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from qcodes.dataset import initialise_or_create_database_at, load_by_run_spec
from uplab import UpLab, experiment

from ionpilot.config import load_config
from ionpilot.sequencer.calibrations import CalibrationStore


def test_rabi_finds_the_simulated_pi_time_and_records_it(
    up_lab: UpLab, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.time()
    result = experiment(capsys, up_lab.lab_file, "rabi", "--points", "10", "--shots", "20")
    config = load_config(up_lab.lab_file)
    truth = 1.0 / (2 * config.sim.ion.clock_rabi_frequency * 1.0)  # amplitude 1: 20 ms
    pi_time, error = result["pi_time_s"], result["pi_time_error_s"]
    assert isinstance(pi_time, float) and isinstance(error, float)
    assert 0 < error < 1e-3 and abs(pi_time - truth) < 3 * error, result
    initialise_or_create_database_at(str(result["database"]))
    back = load_by_run_spec(captured_run_id=result["run_id"])
    specs = {p.name: p for p in back.get_parameters()}
    assert specs["probe_duration"].unit == "s"
    assert specs["excitation"].depends_on == "probe_duration"
    assert len(back.get_parameter_data()["excitation"]["excitation"]) == result["points"]
    snapshot = back.snapshot
    assert snapshot is not None and "pulser" in snapshot["station"]["components"]
    assert json.loads(back.metadata["ionpilot_fit"])["values"]["pi_time"] == pytest.approx(pi_time)
    assert Path(str(result["png"])).stat().st_size > 1000
    recorded = CalibrationStore(config.lab.data_dir).get("pi_time")
    assert recorded is not None and recorded.value == pytest.approx(pi_time)
    assert recorded.uncertainty == pytest.approx(error)
    assert started <= recorded.measured_s <= time.time()
    assert recorded.source == f"experiment rabi, run {result['run_id']}"
    status = up_lab.lab.call("daemon", "status")
    assert isinstance(status, dict) and "clock" not in status["lent"]  # given back


def test_clock_line_finds_the_clock_transition(
    up_lab: UpLab, capsys: pytest.CaptureFixture[str]
) -> None:
    result = experiment(capsys, up_lab.lab_file, "clock-line", "--points", "9", "--shots", "20")
    truth = load_config(up_lab.lab_file).sim.ion.clock_frequency
    centre, error = result["centre_optical_hz"], result["centre_optical_error_hz"]
    assert isinstance(centre, float) and isinstance(error, float)
    assert 0 < error < 5.0 and abs(centre - truth) < 3 * error, (centre - truth, result)
    width = result["width_hz"]
    assert isinstance(width, float) and 20.0 < width < 80.0  # a 20 ms π pulse: ~40 Hz FWHM
