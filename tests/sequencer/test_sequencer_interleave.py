"""The clock's interrogations and user jobs on one controller, on virtual time: the servo keeps
its minimum share (its minimum interrogation rate) however many user jobs wait, user jobs fill the
rest, a held queue runs only the clock, each user result names the lock it ran under, and a day
of clock jobs costs the persisted queue and its audit almost nothing.

The service's worker is driven by hand (`step`), its waits advance a ManualClock, and a fake servo
submits its next clock job a few milliseconds after the last one ended, as the daemon does."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import ManualClock
from ionpilot.sequencer import JobQueue, clock_interrogation
from ionpilot.sequencer.interleave import ClockShare
from ionpilot.sequencer.jobs import Job
from ionpilot.sequencer.service import SequencerService
from ionpilot.sequencer.settings import DeviceSettings

UNIX_0 = 1.7e9
CLOCK_JOB_S = 0.5  # one run of an interrogation (ion_check_interval)
SERVO_GAP_S = 0.02  # the servo's own time between two clock jobs (update, publish)
SHOT_S = 0.01  # a user job's shot
SLICE_S = 2.0
SCHEDULE = clock_interrogation(DeviceSettings()).dumps()
X0 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit q;\nbit c;\nx q;\nc = measure q;\n'


class Lab:
    """The service, a fake controller that plays on virtual time, and a fake servo."""

    def __init__(
        self, tmp: Path | None, share: ClockShare, *, servo: bool = True, gap_s: float = SERVO_GAP_S
    ) -> None:
        self.time = ManualClock()
        self.gap_s = gap_s
        self.queue = JobQueue(
            None if tmp is None else tmp / "jobs.json", clock=lambda: UNIX_0 + self.time.now()
        )
        self.service = SequencerService(
            self.queue,
            DeviceSettings(),
            self.execute,
            BusSettings(),
            "tcp://127.0.0.1:0",  # never bound: the worker is driven by hand
            backend="sim",
            clock=self.time,
            share=share,
            calibrations=lambda: {"pi_time": {"value": 1e-5, "unit": "s"}},
        )
        self.service._nap = self.nap  # type: ignore[method-assign]
        self.servo = servo
        self.next_clock_at: float | None = 0.0 if servo else None
        self.clock_busy_s = 0.0
        self.user_busy_s = 0.0
        self.clock_waits: list[float] = []  # submitted -> started, per clock job
        self.clock_jobs = 0

    # the controller
    def execute(self, job: Job) -> dict[str, Any]:
        if job.kind == "clock":
            assert job.started_s is not None
            self.clock_waits.append(job.started_s - job.submitted_s)
            self.time.advance(CLOCK_JOB_S)
            self.clock_busy_s += CLOCK_JOB_S
            self.clock_jobs += 1
            if self.servo:
                self.next_clock_at = self.time.now() + self.gap_s
            return {"windows": ["cool", "detect"], "counts": [[9, 0]]}
        per_call = int(SLICE_S / SHOT_S)
        left = job.shots
        while left > 0:  # as the trap backend plays a long job: calls of at most one slice
            batch = min(per_call, left)
            self.time.advance(batch * SHOT_S)
            self.user_busy_s += batch * SHOT_S
            left -= batch
            self.servo_submits()
            if left > 0:
                self.service.between_slices()
        return {"counts": {"1": job.shots}}

    # the servo
    def servo_submits(self) -> None:
        if self.next_clock_at is not None and self.time.now() >= self.next_clock_at:
            self.next_clock_at = None
            self.service._note_lock({"lock_state": "locked", "fractional_offset": 2.5e-16})
            self.service._submit({"kind": "clock", "schedule": SCHEDULE, "shots": 5}, "daemon")

    def nap(self, seconds: float, generation: int) -> None:
        """The worker's wait, on virtual time: until the servo's next submission if sooner."""
        due = self.next_clock_at
        if due is not None and due <= self.time.now() + seconds:
            self.time.advance_to(due)
            self.servo_submits()
        else:
            self.time.advance(seconds)

    def run_for(self, seconds: float, users: int = 0, shots: int = 500) -> None:
        end = self.time.now() + seconds
        while self.time.now() < end:
            while len(self.queue.jobs("queued")) - len(self.queue.ready("clock")) < users:
                self.service._submit({"qasm": X0, "shots": shots}, "alice")
            self.servo_submits()
            wait = self.service.step()
            if wait > 0:
                self.nap(wait, 0)


def test_the_clock_keeps_its_minimum_share_and_users_fill_the_rest():
    lab = Lab(None, ClockShare(min_duty=0.4, max_user_slice_s=SLICE_S, grace_s=0.25))
    lab.run_for(600.0, users=3, shots=500)  # ten minutes of a stream of 5 s user jobs
    total = lab.time.now()
    clock_share = lab.clock_busy_s / total
    user_share = lab.user_busy_s / total
    # 0.4 of the time, within one swing of its credit (±one slice): the servo's own gap between
    # two of its jobs comes out of the users' time, not the clock's
    swing = 2 * SLICE_S / total
    assert 0.4 - swing <= clock_share <= 0.4 + swing, clock_share
    # the rest goes to users, less the servo's gaps (at most one per clock job)
    assert user_share >= 0.6 - lab.clock_jobs / total * SERVO_GAP_S, user_share
    # the interrogation rate the servo gets: its configured minimum, 0.4 / 0.5 s = 0.8 /s
    assert lab.clock_jobs / total >= 0.4 / CLOCK_JOB_S - swing / CLOCK_JOB_S
    # no clock job waits longer than one user slice and the grace
    assert max(lab.clock_waits) <= SLICE_S + 0.25 + 1e-9, max(lab.clock_waits)
    done = [j for j in lab.queue.jobs("done") if j.kind == "user"]
    assert len(done) >= 60
    result = done[-1].result
    assert result is not None
    assert result["lock"]["state"] == "locked" and result["lock"]["state_at_start"] == "locked"
    assert result["lock"]["fractional_offset"] == 2.5e-16
    assert result["calibration"] == {"pi_time": {"value": 1e-5, "unit": "s"}}


def test_the_servos_own_gaps_come_out_of_the_users_time_not_the_clocks():
    """A servo that takes 0.2 s between two 0.5 s jobs (within the grace) still gets its 0.4 of
    the time: the controller idling for it earns it its share as a user slice would (counted
    against it, it got 0.4 x 0.5 / 0.7 = 0.29)."""
    lab = Lab(None, ClockShare(min_duty=0.4, max_user_slice_s=SLICE_S, grace_s=0.25), gap_s=0.2)
    lab.run_for(600.0, users=3, shots=500)
    total = lab.time.now()
    swing = 2 * SLICE_S / total
    assert lab.clock_busy_s / total >= 0.4 - swing, lab.clock_busy_s / total
    assert lab.user_busy_s / total >= 0.6 - lab.clock_jobs / total * 0.2


def test_an_idle_wait_for_the_owed_clock_earns_it_its_share():
    share = ClockShare(min_duty=0.25, max_user_slice_s=2.0)
    share.ran("wait", 1.0, users_waiting=True)
    assert share.credit_s == pytest.approx(0.25)
    share.ran("wait", 1.0, users_waiting=False)  # nobody waits: nobody owes anything
    assert share.credit_s == pytest.approx(0.25)
    share.ran("wait", 100.0, users_waiting=True)  # never beyond one slice
    assert share.credit_s == pytest.approx(2.0)
    share.ran("clock", 1.0, users_waiting=True)
    assert share.credit_s == pytest.approx(2.0 - 0.75)


def test_without_user_jobs_the_clock_has_the_controller_to_itself():
    lab = Lab(None, ClockShare(min_duty=0.4, max_user_slice_s=SLICE_S, grace_s=0.25))
    lab.run_for(100.0)
    rate = lab.clock_jobs / lab.time.now()
    assert rate == pytest.approx(1 / (CLOCK_JOB_S + SERVO_GAP_S), rel=0.01)
    assert max(lab.clock_waits) == 0.0


def test_a_held_queue_runs_only_the_clock_and_user_jobs_resume_after():
    lab = Lab(None, ClockShare(min_duty=0.4, max_user_slice_s=SLICE_S, grace_s=0.25))
    lab.queue.hold("daemon.lock", "clock lock is acquiring")
    lab.run_for(60.0, users=2)
    assert lab.user_busy_s == 0.0 and lab.clock_jobs >= 110
    lab.queue.resume("daemon.lock")
    lab.run_for(60.0, users=2)
    assert lab.user_busy_s > 30.0


def test_users_run_at_full_speed_when_the_servo_is_away():
    """A stopped servo idles the controller for at most one grace, then users have it all."""
    lab = Lab(None, ClockShare(min_duty=0.4, max_user_slice_s=SLICE_S, grace_s=0.25), servo=False)
    lab.run_for(60.0, users=2)
    assert lab.user_busy_s >= 60.0 - 0.25 - 1e-6


def test_a_day_of_clock_jobs_leaves_a_small_persisted_trail(tmp_path):
    lab = Lab(tmp_path, ClockShare(min_duty=0.4, max_user_slice_s=SLICE_S, grace_s=0.25))
    lab.queue.max_finished_clock = 100
    lab.run_for(3600.0)  # an hour: ~6900 clock jobs
    assert lab.clock_jobs > 6800
    kept = [j for j in lab.queue.jobs() if j.kind == "clock"]
    assert len(kept) <= 101  # the last 100 finished (and perhaps one queued)
    records = lab.queue.audit()
    assert {r.action for r in records} == {"clock_jobs"}
    assert 6 <= len(records) <= 8  # one per 1000 clock jobs (or 10 min)
    assert sum(int(r.detail.split(" done")[0]) for r in records) <= lab.clock_jobs
    assert "0 failed, 0 cancelled" in records[0].detail
    assert math.isclose(records[0].duration_s or 0.0, 1000 * CLOCK_JOB_S)
    assert lab.queue.bytes_written < 20_000  # a few journal lines, not one per job
    again = JobQueue(tmp_path / "jobs.json", clock=lambda: UNIX_0 + lab.time.now())
    assert [j for j in again.jobs() if j.kind == "clock"] == []  # never persisted
    assert len(again.audit()) == len(records)


def test_the_share_is_validated():
    with pytest.raises(ValueError, match="min_duty"):
        ClockShare(min_duty=1.0)
    with pytest.raises(ValueError, match="max_user_slice_s"):
        ClockShare(max_user_slice_s=0.0)


def test_a_clock_job_whose_caller_gave_up_is_not_played_and_a_cancelled_one_says_so():
    import concurrent.futures

    lab = Lab(None, ClockShare(), servo=False)
    gave_up: concurrent.futures.Future[Any] = concurrent.futures.Future()
    told: concurrent.futures.Future[Any] = concurrent.futures.Future()
    job = {"kind": "clock", "schedule": SCHEDULE, "shots": 5}
    first = lab.service._submit(job, "daemon", waiter=gave_up)["id"]
    second = lab.service._submit(job, "daemon", waiter=told)["id"]
    gave_up.cancel()  # the command server, at the request's deadline
    lab.queue.cancel(second, "operator")  # `jobs cancel`
    lab.service.step()
    assert lab.clock_jobs == 0  # nothing played
    assert lab.queue.get(first).state == "cancelled"
    with pytest.raises(Exception, match=f"clock job {second} cancelled"):
        told.result(timeout=0)
    played: concurrent.futures.Future[Any] = concurrent.futures.Future()
    third = lab.service._submit(job, "daemon", waiter=played)["id"]
    lab.service.step()
    assert played.result(timeout=0) == {
        "windows": ["cool", "detect"],
        "counts": [[9, 0]],
        "id": third,
    }


def test_the_lock_holds_release_names_the_lock_state_its_jobs_run_under():
    """The last clock job before the release said `holdover`; the release says `locked`, so the
    user job it lets go names `locked` at its start (the offset of the last interrogation kept)."""
    lab = Lab(None, ClockShare(min_duty=0.3), servo=False)
    lab.service._note_lock({"lock_state": "holdover", "fractional_offset": 3e-16})
    hold = {"name": "hold", "reason": "clock lock is acquiring", "client": "daemon.lock"}
    lab.service.call_in_process(hold, "daemon.lock").result()
    lab.service._submit({"qasm": X0, "shots": 10}, "alice")
    assert lab.service.step() > 0 and lab.queue.jobs("queued")  # held: nothing ran
    release = {"name": "resume", "lock_state": "locked", "client": "daemon.lock"}
    lab.service.call_in_process(release, "daemon.lock").result()
    lab.run_for(1.0)
    (job,) = lab.queue.jobs("done")
    assert job.result is not None
    assert job.result["lock"]["state_at_start"] == "locked"
    assert job.result["lock"]["fractional_offset"] == 3e-16
