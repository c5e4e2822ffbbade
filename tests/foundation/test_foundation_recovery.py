"""End to end with real processes: during `ionpilot up`, `ionpilot sim fault ion_loss 3` takes
one ion out of the five-ion chain. The daemon's health monitor notices it from the per-ion
cooling counts, holds user jobs, reloads the whole chain and counts it (five ions on their own
pixels) before jobs resume, and the clock lock resumes; every decision is in the audit log
(SQLite) with its reason. Meanwhile:

* a Bell job that was running when the ion left fails with the trap's chain-incomplete error
  (its shots are discarded: no result from a partial chain), and no job finishing after the loss
  carries a result unless it started once the chain was counted whole again;
* a Bell job submitted during the recovery stays queued while the queue is held (by the
  recovery, or by the clock lock not being locked), and runs after it on the whole chain;
* `ionpilot device --json` reports `maintenance` from the detection until the recovery is over
  (never `idle` in between), and `idle` after.

On the shared live lab (tests/foundation/sharedlab.py): its audit rows are the ones written
after the handover."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from labprocs import command_client, daemon_status, locked_and_idle
from sharedlab import LiveUp

from ionpilot.cli import main

STEP_S = 0.25  # how often the lab is asked
LOST_ION = "3"  # not the clock ion (the centre one) and not a qubit of the Bell program
BELL = Path(__file__).resolve().parents[1] / "sequencer" / "qasm" / "bell_v2.qasm"
VICTIM_SHOTS = 4000  # ~6.5 s of shots in ~2 s controller calls: still running at the loss
HELD_SHOTS = 200
CHAIN_INCOMPLETE = "the chain is incomplete"


def audit_times(audit: Path, mark: int) -> list[tuple[float, str, str, str]]:
    """(wall time in Unix s, kind, action, reason) of the daemon's audit rows after `mark`."""
    db = sqlite3.connect(audit)
    try:
        query = "SELECT wall_ns, kind, action, reason FROM audit WHERE id > ? ORDER BY id"
        return [(w * 1e-9, str(k), str(a), str(r)) for w, k, a, r in db.execute(query, (mark,))]
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ion_loss_during_up_is_recovered_and_the_lock_resumes(
    shared_up: LiveUp, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, up = shared_up.lab_file, shared_up.up
    bell = BELL.read_text()

    def cli(*argv: str) -> tuple[int, str]:
        """`ionpilot ARGV` in this process: its exit code and what it printed."""
        capsys.readouterr()
        code = main(list(argv))
        return code, capsys.readouterr().out

    def device_status() -> dict[str, Any]:
        code, out = cli("device", "--json", "--config", str(lab))
        assert code == 0, out
        status: dict[str, Any] = json.loads(out)["status"]
        return status

    with (
        command_client(shared_up.config, "daemon") as daemon,
        command_client(shared_up.config, "sequencer") as sequencer,
    ):

        def status() -> dict[str, Any]:
            return daemon_status(daemon)

        def idle() -> bool:
            return locked_and_idle(status())

        def submit(shots: int) -> dict[str, Any]:
            args = {"name": "submit", "qasm": bell, "shots": shots, "client": "test@recovery"}
            reply: dict[str, Any] = sequencer.call("sequencer", "call", args, timeout=10.0)
            return reply

        def job(job_id: str) -> dict[str, Any]:
            reply: dict[str, Any] = sequencer.call(
                "sequencer", "get", {"name": "job", "id": job_id}, timeout=10.0
            )
            return reply

        def queue() -> dict[str, Any]:
            """The queue's hold state and its user jobs, read in one request (consistent)."""
            reply: dict[str, Any] = sequencer.call(
                "sequencer", "list", {"kind": "user", "limit": 1000}, timeout=10.0
            )
            return reply

        assert up.wait_until(idle, 90, STEP_S), up.text()
        before = device_status()  # `calibration` if an earlier user's record has aged
        assert before["state"] == ("calibration" if before["needsCalibration"] else "idle")

        # a Bell job is running on the whole chain when one ion leaves it
        victim = submit(VICTIM_SHOTS)["id"]
        assert up.wait_until(lambda: job(victim)["state"] != "queued", 20, 0.02), job(victim)
        assert job(victim)["state"] == "running", job(victim)
        lost_s = time.time()
        code, out = cli("sim", "fault", "--config", str(lab), "ion_loss", LOST_ION)
        assert code == 0 and out.strip() == f"ion_loss {LOST_ION}: ions lost", out
        injected = time.monotonic()

        # until the recovery is over and the held job has run: the device status, the queue
        timeline: list[tuple[float, str, str, str | None]] = []  # (s, device, recovering, job)
        held: dict[str, Any] | None = None
        held_states: list[tuple[bool, str, str]] = []  # (held, reason, held job's state)
        deadline = injected + 150.0
        while time.monotonic() < deadline:
            up.check()
            recovering = str(status().get("recovering"))
            device = device_status()["state"]
            if held is None and recovering == "ion_loss":
                held = submit(HELD_SHOTS)
            state = None
            if held is not None:  # read after the device: queued now, so queued then too
                listed = queue()
                (mine,) = [j for j in listed["jobs"] if j["id"] == held["id"]]
                state = mine["state"]
                held_states.append((listed["held"], listed["hold_reason"], state))
            timeline.append((time.monotonic() - injected, device, recovering, state))
            if state in ("done", "failed", "cancelled"):
                break
            time.sleep(STEP_S)
        assert held is not None, ("the recovery was never seen running", timeline)
        assert up.wait_until(idle, 150, STEP_S), (status(), up.tail(30))
        final = status()
        assert final["safe_state"] is False
        after = device_status()
        expected = "calibration" if after["needsCalibration"] else "idle"
        assert after["state"] == expected, after
        victim_job, held_job = job(victim), job(held["id"])
        user_jobs = queue()["jobs"]

    rows = audit_times(shared_up.audit_file, shared_up.audit_mark)
    actions = [(k, a) for _, k, a, _ in rows]
    when = {(k, a): t for t, k, a, _ in reversed(rows)}  # the first of each
    reasons = {(k, a): r for _, k, a, r in reversed(rows)}

    # (3) the whole chain reloaded and counted, in this order, holding the jobs meanwhile
    assert ("trip", "ion_loss") in actions, rows
    assert ("cleared", "ion_loss") not in actions, rows  # the loss is not "seen" back
    order = [
        ("trip", "ion_loss"),
        ("jobs", "hold"),
        ("step", "ion_loss.reload"),
        ("step", "ion_loss.verify_single_ion"),
        ("recovered", "ion_loss"),
        ("jobs", "release"),
    ]
    assert all(step in when for step in order), rows
    assert [when[step] for step in order] == sorted(when[step] for step in order), rows
    assert reasons[("jobs", "hold")] == "recovery: ion_loss", rows
    assert reasons[("step", "ion_loss.verify_single_ion")] == "5 ions counted: the chain is whole"
    assert ("escalate", "ion_loss") not in actions, rows
    counted_s = when[("step", "ion_loss.verify_single_ion")]

    # (2) maintenance from the detection until the held job ran, never idle in between; idle after
    states = [d for _, d, _, _ in timeline]
    assert "maintenance" in states, timeline
    first = states.index("maintenance")
    meanwhile = [d for _, d, _, job in timeline[first:] if job in (None, "queued")]
    assert "idle" not in meanwhile, timeline
    assert any(d == "maintenance" and r == "ion_loss" for _, d, r, _ in timeline), timeline

    # (1) the job submitted during the recovery: held (queued, the reason naming the recovery or
    # the lock), then run on the whole chain
    assert held["held"] is True and "recovery: ion_loss" in held["hold_reason"], held
    assert held_states and held_states[0][0] is True, held_states
    for is_held, reason, state in held_states:
        if is_held:
            assert state == "queued", held_states
            assert "recovery: ion_loss" in reason or "clock lock is" in reason, held_states
    assert held_job["state"] == "done", held_job
    assert held_job["started_s"] >= counted_s, (held_job, rows)
    counts = held_job["result"]["counts"]
    assert sum(counts.values()) == HELD_SHOTS, counts
    correlated = (counts.get("00", 0) + counts.get("11", 0)) / HELD_SHOTS
    assert correlated >= 0.9, counts
    assert held_job["result"]["lock"]["state"] == "locked", held_job["result"]["lock"]

    # (4) no result from a partial chain: the running job failed, and every job finished since
    # the loss either failed on the incomplete chain or started once the chain was whole again
    assert victim_job["state"] == "failed" and victim_job["result"] is None, victim_job
    assert CHAIN_INCOMPLETE in victim_job["error"], victim_job
    assert f"ion {LOST_ION} in" in victim_job["error"], victim_job
    for j in user_jobs:
        if j["finished_s"] is not None and j["finished_s"] >= lost_s:
            full = j["state"] == "done" and j["started_s"] >= counted_s
            assert full or (j["state"] == "failed" and CHAIN_INCOMPLETE in j["error"]), j

    to_maintenance = next(t for t, d, _, _ in timeline if d == "maintenance")
    reload_s = when[("step", "ion_loss.reload")] - when[("step", "ion_loss.repump_check")]
    print(
        f"ion {LOST_ION} lost: maintenance after {to_maintenance:.2f} s; held job queued "
        f"{held_job['started_s'] - held_job['submitted_s']:.2f} s; reload {reload_s:.2f} s; "
        f"recovered {when[('recovered', 'ion_loss')] - lost_s:.2f} s after the loss; "
        f"held job counts {counts}; victim: {victim_job['error'][:80]}"
    )
