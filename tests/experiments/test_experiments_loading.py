"""`ionpilot experiment loading-curve` on the shared live lab (fast loading: a 2 s reload, an
oven that heats in 2 s): the experiment borrows the trap from the daemon, empties it (here by
the simulator's ion-loss fault, for time), times the chain's load at each oven current, fits, and gives the trap back; the daemon
then verifies the chain and the lab is locked with its five ions again. The hand-over is
refused while someone else holds the trap, and during a recovery."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from labprocs import inject_fault  # type: ignore[import-not-found]
from qcodes.dataset import initialise_or_create_database_at, load_by_run_spec
from uplab import UpLab, experiment

from ionpilot.experiments.clock_laser import ClockLaserRefused, borrowed_laser
from ionpilot.experiments.scan import daemon_status_reader


def _healthy(status: dict[str, Any]) -> bool:
    return (
        status.get("state") == "locked" and not status.get("recovering") and not status.get("lent")
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_loading_curve_falls_with_current_and_the_lab_is_whole_after(
    up_lab: UpLab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = up_lab.lab
    status = daemon_status_reader(lab)
    assert up_lab.up.wait_until(lambda: _healthy(dict(status())), 120, 0.2)
    power = lab.rf_drive.power.get()
    result = experiment(
        capsys,
        up_lab.lab_file,
        "loading-curve",
        "--currents",
        "2.1,2.3,2.5",
        "--timeout",
        "30",
        "--empty",
        "sim_fault",  # the RF strategy costs ~8 s a point (its ramp, 3 s low): run by hand
    )
    times = result["load_times_s"]
    assert len(times) == 3 and all(t is not None and 0 < t < 30 for t in times), result
    assert times[0] > times[-1], result  # a hotter oven loads faster
    assert result["fit"]["converged"], result
    assert math.isfinite(result["load_time_s"]) and result["load_time_error_s"] > 0, result
    assert result["calibrations"]["load_time"]["value"] == pytest.approx(result["load_time_s"])
    assert Path(result["png"]).stat().st_size > 1000
    initialise_or_create_database_at(result["database"])
    back = load_by_run_spec(captured_run_id=result["run_id"])
    assert len(back.get_parameter_data()["load_time"]["load_time"]) == 3
    # given back: RF power as it was, the daemon verified the chain, locked with five ions
    assert lab.rf_drive.power.get() == pytest.approx(power)
    assert up_lab.up.wait_until(lambda: _healthy(dict(status())), 120, 0.2)
    assert lab.pulser.ions_fluorescing.get() == 5


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_trap_lent_holds_the_reload_and_is_refused_twice_and_during_a_recovery(
    up_lab: UpLab,
) -> None:
    lab = up_lab.lab
    status = daemon_status_reader(lab)
    assert up_lab.up.wait_until(lambda: _healthy(dict(status())), 120, 0.2)
    with borrowed_laser(lab, "trap", "first borrower", lease_s=60.0):
        now = status()
        assert now["lent"]["trap"]["owner"] == "first borrower" and now["state"] == "holdover"
        with (
            pytest.raises(ClockLaserRefused, match="lent to 'first borrower'"),
            borrowed_laser(lab, "trap", "second borrower"),
        ):
            pass
        # the borrower's empty trap: the daemon's ion-loss playbook does not start
        fault = inject_fault(up_lab.lab_file, "ion_loss")
        assert fault.returncode == 0, fault.stdout + fault.stderr
        assert up_lab.up.wait_until(lambda: bool(status().get("alarm")), 10, 0.1)
        assert not up_lab.up.wait_until(lambda: bool(status().get("recovering")), 2, 0.1)
    # given back incomplete: the daemon reloads the chain, and lends nothing meanwhile
    assert up_lab.up.wait_until(lambda: bool(status().get("recovering")), 10, 0.1)
    with (
        pytest.raises(ClockLaserRefused, match="not lent during a recovery"),
        borrowed_laser(lab, "trap", "during recovery"),
    ):
        pass
    assert up_lab.up.wait_until(lambda: _healthy(dict(status())), 120, 0.2)
    assert lab.pulser.ions_fluorescing.get() == 5
