"""The shorter live twin of tests/harness/test_harness_clock_and_jobs.py (ten minutes on virtual
time): on the shared live lab (`ionpilot up`, the daemon's interrogations clock jobs in the
sequencer service's queue), a stream of Bell jobs submitted at once runs while the clock lock
shares the pulse controller. The lock stays locked, every result names the lock state it ran
under (and the laser's fractional offset), the servo's interrogations keep running at their
minimum rate less the share's credit swing over so short a span (one user slice either way;
the strict rate is the virtual-time test's), and the users get the rest of the controller."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from labprocs import command_client
from sharedlab import LiveUp

from ionpilot.servo.interrogation import clock_duty, lock_probe, min_interrogation_rate_hz

BELL = (Path(__file__).resolve().parents[1] / "sequencer" / "qasm" / "bell_v2.qasm").read_text()
JOBS = 8
SHOTS = 1000  # 1.5 s of shots: one controller call each
STEP_S = 0.25  # how often the lab is asked
SLICE_S = 2.0  # ClockShare.max_user_slice_s, as the `sequencer` process wires it


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_clock_stays_locked_and_keeps_its_rate_while_user_jobs_stream(
    shared_up: LiveUp,
) -> None:
    lock = shared_up.config.servo.clock_lock
    pulses = shared_up.config.servo.pulses
    states: set[str] = set()
    with (
        command_client(shared_up.config, "sequencer") as sequencer,
        command_client(shared_up.config, "daemon") as daemon,
    ):
        ids = set()
        for _ in range(JOBS):
            args = {"name": "submit", "qasm": BELL, "shots": SHOTS, "client": "stream"}
            ids.add(sequencer.call("sequencer", "call", args, timeout=10.0)["id"])
        deadline = time.monotonic() + 90.0
        while True:
            states.add(daemon.call("daemon", "status", {}, timeout=5.0)["state"])
            listing = sequencer.call("sequencer", "list", {"kind": "user", "limit": 1000})
            mine = [j for j in listing["jobs"] if j["id"] in ids]
            if len(mine) == JOBS and all(j["state"] in ("done", "failed") for j in mine):
                break
            assert time.monotonic() < deadline, mine
            time.sleep(STEP_S)
        clock = sequencer.call("sequencer", "list", {"kind": "clock", "limit": 1000})["jobs"]
        results = [sequencer.call("sequencer", "get", {"name": "job", "id": i}) for i in ids]
        status = sequencer.call("sequencer", "status", {}, timeout=5.0)
    assert states == {"locked"}, states
    assert [j["error"] for j in mine if j["state"] != "done"] == []
    for job in results:
        result = job["result"]
        assert result["lock"]["state_at_start"] == "locked", result["lock"]
        assert result["lock"]["state"] == "locked", result["lock"]
        offset = result["lock"]["fractional_offset"]  # None: no locked update since the lock
        assert offset is None or abs(offset) < 1e-13, result["lock"]
        assert sum(result["counts"].values()) == SHOTS
    last = max(results, key=lambda j: j["finished_s"])["result"]["lock"]
    assert isinstance(last["fractional_offset"], float), last  # the servo's updates came
    start = min(j["started_s"] for j in mine)
    end = max(j["finished_s"] for j in mine)
    span = end - start
    # the share as the lab file sets it
    assert status["clock"]["min_duty"] == pytest.approx(clock_duty(lock, pulses))
    interrogation_s = lock.probes_per_side * lock_probe(lock).cycle_time_s
    runs = [
        j
        for j in clock
        if j["started_s"] is not None
        and start <= j["started_s"] < end
        and j["shots"] > 1  # an interrogation's run, not a one-shot fluorescence check
    ]
    probes = sum(int(j["shots"]) for j in runs)
    rate = probes / lock.probes_per_side / span
    swing = 2 * SLICE_S / span  # the credit's range, as a share of the span
    floor = min_interrogation_rate_hz(lock) - swing / interrogation_s
    clock_s = sum(
        min(j["finished_s"], end) - max(j["started_s"], start)
        for j in clock
        if j["started_s"] is not None and j["finished_s"] is not None
        if j["finished_s"] > start and j["started_s"] < end
    )
    ran_s = sum(j["finished_s"] - j["started_s"] for j in mine)
    print(
        f"{JOBS} Bell jobs over {span:.1f} s: interrogations {rate:.3f}/s (min "
        f"{min_interrogation_rate_hz(lock):.3f}/s, floor over this span {floor:.3f}/s), clock "
        f"share {clock_s / span:.3f} (min {status['clock']['min_duty']:.3f}), users "
        f"{ran_s / span:.3f}"
    )
    assert rate >= floor, (rate, floor)
    # the users get the rest, less the servo's own gaps (live: up to ~12 % of a short span)
    assert ran_s / span >= 1 - status["clock"]["min_duty"] - swing - 0.15, ran_s / span
