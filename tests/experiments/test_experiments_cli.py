"""`ionpilot experiment micromotion` on the lab under `ionpilot up`: a progress line, the
compensating voltage with its uncertainty within 3σ of the simulated truth (the World's stray
field over the field per volt), the dataset read back, a PNG beside it; bad settings refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from qcodes.dataset import initialise_or_create_database_at, load_by_run_spec
from uplab import UpLab, experiment

from ionpilot.cli import main
from ionpilot.config import load_config


def test_micromotion_finds_the_compensating_voltage(
    up_lab: UpLab, capsys: pytest.CaptureFixture[str]
) -> None:
    before = up_lab.lab.dc_electrodes.ch01.voltage.get()
    result: dict[str, Any] = experiment(capsys, up_lab.lab_file, "micromotion", "--points", "9")
    trap = load_config(up_lab.lab_file).sim.trap
    truth = trap.stray_field_x / trap.dc_field_per_volt
    v0, error = result["compensation_voltage_V"], result["compensation_voltage_error_V"]
    # each point counts in its own pulser run after the set (no counting window shared with
    # the daemon, no wall-clock settle): the fit finds the truth within 3 sigma
    assert 0 < error < 0.2 and abs(v0 - truth) < 3 * error, result
    assert Path(result["png"]).stat().st_size > 1000
    initialise_or_create_database_at(result["database"])
    back = load_by_run_spec(captured_run_id=result["run_id"])
    assert json.loads(back.metadata["ionpilot_fit"])["values"]["v0"] == pytest.approx(v0)
    assert len(back.get_parameter_data()["fluorescence"]["fluorescence"]) == 9
    assert up_lab.lab.dc_electrodes.ch01.voltage.get() == pytest.approx(before)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["no_such"],
            "no experiment 'no_such'; there is: clock-line, cooling-scan, loading-curve, micromotion",
        ),
        (["rabi", "--amplitude", "1.5"], "--amplitude 1.5: 0 < amplitude <= 1"),
        (["clock-line", "--probe_time", "0.005"], "a π pulse needs at least 0.02 s"),
        (["ms-gate", "--ion_a", "1", "--ion_b", "1"], "two different ions"),
        (["micromotion", "--points", "2"], "--points 2: 5..201"),
        (["micromotion", "--start", "1", "--stop", "0"], "--start 1 must be below --stop 0"),
        (["micromotion", "--colour", "red"], "settings of micromotion: --electrode"),
        (["loading-curve", "--currents", "2.1,x"], "comma-separated amperes"),
        (["loading-curve", "--currents", "9"], "each within 0.5..5 A"),
        (["loading-curve", "--empty", "hammer"], "--empty 'hammer': one of rf, sim_fault"),
        (["loading-curve", "--currents", "2.1,2.8"], "--currents 2.8: beyond the oven current"),
    ],
)
def test_bad_settings_are_named_and_nothing_runs(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_file = Path(__file__).resolve().parents[2] / "configs" / "sim-lab.yaml"
    assert main(["experiment", *argv, "--config", str(lab_file)]) == 2
    err = capsys.readouterr().err
    assert words in err
    assert "Traceback" not in err
