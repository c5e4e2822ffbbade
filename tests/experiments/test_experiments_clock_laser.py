"""The clock laser lent by the daemon: the lock holds over while an experiment has it and
resumes after; a lease that runs out brings it back by itself; only its holder returns it; a
second borrower is refused; only the borrower plays clock jobs. (The refusal during a recovery:
test_experiments_scan_fault.)"""

from __future__ import annotations

import pytest
from uplab import UpLab

from ionpilot.bus.codec import BusError
from ionpilot.experiments.clock_laser import ClockLaserRefused, clock_laser
from ionpilot.experiments.pulses import SequencerJobs, clock_probe


def test_the_lock_holds_over_while_lent_and_resumes_after(up_lab: UpLab) -> None:
    lab = up_lab.lab
    with clock_laser(lab, "test borrower", lease_s=60.0) as loan:
        status = loan.refresh()
        assert status["state"] == "holdover"
        assert status["lent"]["clock"]["owner"] == "test borrower"
        assert isinstance(status["optical_frequency_hz"], float)
        with (
            pytest.raises(ClockLaserRefused, match="lent to 'test borrower'"),
            clock_laser(lab, "someone else", wait_s=0.0),
        ):
            pass
        with pytest.raises(BusError, match="does not hold the clock laser"):
            lab.call("daemon", "call", {"name": "return_laser", "owner": "someone else"})
    assert up_lab.up.wait_until(
        lambda: lab.call("daemon", "status")["state"] == "locked",
        30,
        0.2,  # type: ignore[index]
    )
    assert lab.call("daemon", "status")["lent"] == {}  # type: ignore[index]


def test_a_lease_that_runs_out_gives_the_laser_back(up_lab: UpLab) -> None:
    lab = up_lab.lab
    assert up_lab.up.wait_until(
        lambda: lab.call("daemon", "status")["state"] == "locked",
        30,
        0.2,  # type: ignore[index]
    )
    lab.call("daemon", "call", {"name": "lend_laser", "owner": "crashed", "lease_s": 1.0})
    assert up_lab.up.wait_until(
        lambda: lab.call("daemon", "status")["lent"] == {},
        20,
        0.2,  # type: ignore[index]
    )
    for bad in (
        {"owner": "x", "lease_s": 0},
        {"owner": "x", "lease_s": 1e9},
        {"lease_s": 5},
        {"owner": "x", "lease_s": 5, "laser": "laser_999"},
    ):
        with pytest.raises(BusError) as refused:
            lab.call("daemon", "call", {"name": "lend_laser", **bad})
        assert refused.value.code == "bad_request"


def test_only_the_borrower_plays_clock_jobs_and_nobody_plays_the_pulser(up_lab: UpLab) -> None:
    """Issue 19, nothing bypassed: with the lab's own keys (a script speaks as `operator`), a
    schedule is a clock job (run while user jobs are held) only with the daemon's lease token of
    the borrowed clock laser; the pulser plays nobody's schedule but the sequencer's."""
    lab = up_lab.lab
    device = lab.config.device
    schedule = clock_probe(device, [(0.0, 1e-3, 0.5, 0.0)], 200e6)
    submit = {"name": "submit", "kind": "clock", "schedule": schedule.dumps(), "shots": 2}
    with pytest.raises(BusError, match=r"only the clock servo \('daemon'\)") as refused:
        lab.call("sequencer", "call", submit)
    assert refused.value.code == "forbidden"
    with pytest.raises(BusError, match=r"pulser\.run is sequencer's alone") as played:
        detect = {"t_ns": 0, "duration_ns": 1000, "channel": "detect"}
        lab.call("pulser", "call", {"name": "run", "args": [1, [detect]]})
    assert played.value.code == "forbidden"
    with clock_laser(lab, "test lease", lease_s=60.0) as loan:
        assert isinstance(loan.lease, str) and len(loan.lease) == 32
        status = lab.call("sequencer", "status")
        assert status["leases"]["clock"]["holder"] == "operator"  # type: ignore[index]
        with pytest.raises(BusError, match="'operator' sent no lease"):
            lab.call("sequencer", "call", submit)
        reply = SequencerJobs(lab, client="test lease").run_schedule(schedule, 2, loan.lease)
        assert len(reply["counts"]) == 2
        lease = loan.lease
    with pytest.raises(BusError, match="not the current one"):
        lab.call("sequencer", "call", {**submit, "lease": lease})
