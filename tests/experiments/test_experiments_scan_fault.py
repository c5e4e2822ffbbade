"""A scan on the live lab while the ion is lost: it pauses while the daemon recovers (its real
playbook reloads the ion), then redoes the interrupted point; each planned point is in the
dataset exactly once and the pause is in its metadata."""

from __future__ import annotations

import json
from typing import Any

import pytest
from labprocs import inject_fault  # type: ignore[import-not-found]
from qcodes.dataset import load_by_run_spec
from qcodes.parameters import Parameter
from uplab import UpLab

import ionpilot
from ionpilot.experiments.clock_laser import ClockLaserRefused, clock_laser
from ionpilot.experiments.scan import Suspender, daemon_status_reader, scan

PLANNED = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]  # ch03: no part in the micromotion the ion sees
FAULT_AT = 2  # the point during whose measurement the ion is lost


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_scan_pauses_for_an_ion_loss_and_holds_each_point_once(up_lab: UpLab) -> None:
    lab = up_lab.lab
    station = ionpilot.qcodes_station(lab, ["dc_electrodes", "pulser"])
    sweep = station.dc_electrodes.ch03.voltage
    counts = station.pulser.counts
    status = daemon_status_reader(lab)
    calls: list[float] = []

    def measure() -> Any:
        """The counts; during point FAULT_AT the ion is lost (as an operator would inject it)
        and the reading is taken once the daemon has noticed."""
        calls.append(sweep.cache.get())
        if len(calls) == FAULT_AT + 1:
            fault = inject_fault(up_lab.lab_file, "ion_loss")
            assert fault.returncode == 0, fault.stdout + fault.stderr
            assert up_lab.up.wait_until(lambda: bool(status().get("recovering")), 30, 0.2)
            # no experiment takes the clock laser while the daemon recovers the lab
            with (
                pytest.raises(ClockLaserRefused, match="not lent during a recovery"),
                clock_laser(lab, "scan under ion loss"),
            ):
                pass
        return counts.get()

    probe = Parameter("fluorescence", unit="", get_cmd=measure, set_cmd=False)
    suspender = Suspender(status, settle_s=1.0, poll_s=0.2, timeout_s=150.0)
    result = scan(sweep, PLANNED, [probe], suspender, name="ch03 under ion loss")

    data = load_by_run_spec(captured_run_id=result.dataset.captured_run_id)
    stored = data.get_parameter_data()["fluorescence"]
    assert sorted(stored["dc_electrodes_ch03_voltage"]) == pytest.approx(PLANNED)
    assert len(stored["fluorescence"]) == len(PLANNED)  # no point lost, none twice
    assert calls.count(PLANNED[FAULT_AT]) == 2  # the interrupted point, measured again
    pauses = json.loads(data.metadata["ionpilot_pauses"])
    assert len(pauses) >= 1, pauses
    first = pauses[0]
    assert first["point"] == FAULT_AT and first["discarded"] is True
    assert "ion_loss" in first["reason"] or "alarm" in first["reason"]
    assert first["waited_s"] > 5.0  # the reload, not a blink
    assert int(data.metadata["ionpilot_planned_points"]) == len(PLANNED)
    after = status()
    assert after.get("recovering") == "" and not after.get("alarm"), after
