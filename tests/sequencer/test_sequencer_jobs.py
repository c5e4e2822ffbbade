"""The job queue: priorities, due times, cancellation, hold/resume, audit, restart safety."""

import json

import pytest

from ionpilot.sequencer import JobError, JobQueue, clock_interrogation, execute_job
from ionpilot.sequencer.settings import DeviceSettings

BELL = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n'


def _next(queue):
    job = queue.next_job()
    assert job is not None
    return job.job_id


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_priority_then_due_then_fifo(tmp_path):
    clock = Clock()
    q = JobQueue(tmp_path / "jobs.json", clock=clock)
    low = q.submit(BELL, submitter="alice", priority=0)
    high = q.submit(BELL, submitter="bob", priority=5)
    later = q.submit(BELL, submitter="carol", priority=9, due_s=clock.t + 60)
    low2 = q.submit(BELL, submitter="dave", priority=0)
    assert _next(q) == high
    assert _next(q) == low
    assert _next(q) == low2
    assert q.next_job() is None
    clock.t += 61
    assert _next(q) == later


def test_cancel_and_audit(tmp_path):
    clock = Clock()
    q = JobQueue(tmp_path / "jobs.json", clock=clock)
    job = q.submit(BELL, submitter="alice")
    clock.t += 2
    q.cancel(job, "bob")
    assert q.get(job).state == "cancelled"
    with pytest.raises(JobError):
        q.cancel(job, "bob")
    actions = [(a.action, a.who, a.at_s) for a in q.audit()]
    assert actions == [("submit", "alice", 1000.0), ("cancel", "bob", 1002.0)]


def test_hold_keeps_clock_jobs_running(tmp_path):
    clock = Clock()
    q = JobQueue(tmp_path / "jobs.json", clock=clock)
    user = q.submit(BELL, submitter="alice", priority=10)
    clock_job = q.submit(
        clock_interrogation(DeviceSettings()).dumps(), submitter="daemon", kind="clock"
    )
    q.hold("daemon", "ion loss recovery")
    assert _next(q) == clock_job
    assert q.next_job() is None
    q.resume("daemon")
    assert _next(q) == user


def test_a_borrowers_clock_jobs_pass_only_the_locks_own_hold(tmp_path):
    """The clock laser lent: the lock holds over and holds user jobs (`daemon.lock`), which the
    borrower's clock jobs pass; a recovery's hold (or an operator's) holds them too."""
    clock = Clock()
    q = JobQueue(tmp_path / "jobs.json", clock=clock)
    schedule = clock_interrogation(DeviceSettings()).dumps()
    q.hold("daemon.lock", "clock lock is holdover (clock laser lent)")
    borrowed = q.submit(schedule, submitter="experiment rabi", kind="clock")
    assert _next(q) == borrowed
    q.hold("daemon", "recovery: mode_hop")
    held = q.submit(schedule, submitter="experiment rabi", kind="clock")
    servo = q.submit(schedule, submitter="daemon", kind="clock")
    assert [j.job_id for j in q.ready()] == [servo]
    assert _next(q) == servo
    q.resume("daemon")
    assert _next(q) == held


def test_run_and_duration_recorded(tmp_path):
    clock = Clock()
    q = JobQueue(tmp_path / "jobs.json", clock=clock)
    job_id = q.submit(BELL, submitter="alice", shots=50)
    device = DeviceSettings()

    def execute(job):
        clock.t += 3.5
        return execute_job(job, device, ideal=True, seed=1)

    q.run_next(execute)
    job = q.get(job_id)
    assert job.state == "done" and job.result is not None
    assert sum(job.result["counts"].values()) == 50
    done = next(a for a in q.audit() if a.action == "done")
    assert done.duration_s == pytest.approx(3.5)
    bad = q.submit("OPENQASM 3.0;\nqubit q;\nfoo q;\n", submitter="eve")
    q.run_next(lambda j: execute_job(j, device, ideal=True))
    assert q.get(bad).state == "failed" and "undefined gate" in str(q.get(bad).error)


def test_restart_loses_nothing(tmp_path):
    clock = Clock()
    path = tmp_path / "jobs.json"
    q = JobQueue(path, clock=clock)
    a = q.submit(BELL, submitter="alice")
    b = q.submit(BELL, submitter="bob", priority=1)
    q.hold("servo", "recovery")
    q.resume("servo")
    assert _next(q) == b
    again = JobQueue(path, clock=clock)  # the process died while b was running
    assert again.get(b).state == "queued" and again.get(a).state == "queued"
    assert [x.action for x in again.audit()][-1] == "requeue"
    assert _next(again) == b


def test_bounded_queue(tmp_path):
    q = JobQueue(None, clock=Clock(), max_queued=2)
    q.submit(BELL, submitter="a")
    q.submit(BELL, submitter="a")
    with pytest.raises(JobError, match="queue full"):
        q.submit(BELL, submitter="a")


def test_the_queue_is_bounded_in_bytes_of_programs(tmp_path):
    """A thousand programs of 200 kB each would hold 200 MB in the service and in every
    snapshot: waiting and kept programs are bounded in bytes too."""
    big = BELL + "// " + "x" * 4000 + "\n"
    q = JobQueue(
        tmp_path / "jobs.json", clock=Clock(), max_queued_bytes=10_000, max_finished_bytes=10_000
    )
    first, second = q.submit(big, submitter="a"), q.submit(big, submitter="a")
    with pytest.raises(
        JobError, match=r"queue full: 0.0 MB of programs waiting and this one is 4 kB"
    ):
        q.submit(big, submitter="a")
    assert [j.job_id for j in q.jobs("queued")] == [first, second]  # nothing queued by it
    for _ in range(2):  # run both, then two more: only the newest two are kept
        q.finish(_next(q), result={"counts": {}})
    third, fourth = q.submit(big, submitter="a"), q.submit(big, submitter="a")
    for _ in range(2):
        q.finish(_next(q), result={"counts": {}})
    assert [j.job_id for j in q.jobs("done")] == [third, fourth]
    again = JobQueue(tmp_path / "jobs.json", clock=Clock())  # and so is the record on disk
    assert [j.job_id for j in again.jobs("done")] == [third, fourth]


@pytest.mark.parametrize("due", [float("nan"), float("inf"), float("-inf"), 1e308, -2601.0])
def test_due_times_that_cannot_be_are_refused_and_change_nothing(tmp_path, due):
    clock = Clock()
    q = JobQueue(tmp_path / "jobs.json", clock=clock)
    with pytest.raises(JobError, match=r"is not a Unix time in seconds from 1 h ago"):
        q.submit(BELL, submitter="eve", due_s=due)
    assert q.jobs() == [] and q.audit() == []
    # the edges of the allowed range are accepted
    q.submit(BELL, submitter="alice", due_s=clock.t - 3600)
    q.submit(BELL, submitter="alice", due_s=clock.t + 366 * 86400)
    assert len(q.jobs("queued")) == 2


def test_who_held_the_queue_and_since_when_survive_a_restart(tmp_path):
    clock = Clock()
    path = tmp_path / "jobs.json"
    q = JobQueue(path, clock=clock)
    q.hold("daemon", "recovery: ion_loss")
    clock.t += 5
    q.hold("daemon", "safe state")  # the same hold, a new reason: still held since 1000
    q.hold("alice@lab", "laser alignment")
    assert q.hold_state() == {
        "held": True,
        "hold_reason": "safe state; laser alignment",
        "held_by": "daemon, alice@lab",
        "held_since_s": 1000.0,
        "holds": [
            {"by": "daemon", "reason": "safe state", "since_s": 1000.0},
            {"by": "alice@lab", "reason": "laser alignment", "since_s": 1005.0},
        ],
    }
    assert JobQueue(path, clock=clock).hold_state() == q.hold_state()  # journal replay
    q.checkpoint()
    assert JobQueue(path, clock=clock).hold_state() == q.hold_state()  # snapshot
    q.resume("daemon")
    q.resume("alice@lab")
    assert JobQueue(path, clock=clock).hold_state()["held_since_s"] is None


def test_each_hold_is_released_by_its_own_holder(tmp_path):
    """An operator's maintenance hold outlives the daemon's recovery, and the reverse."""
    clock = Clock()
    q = JobQueue(tmp_path / "jobs.json", clock=clock)
    user = q.submit(BELL, submitter="bob")
    q.hold("alice@lab", "laser alignment")
    q.hold("daemon", "recovery: ion_loss")
    q.resume("daemon")  # the recovery is over; the alignment is not
    assert q.held and q.hold_state()["held_by"] == "alice@lab"
    assert q.next_job() is None
    q.hold("daemon", "recovery: mode_hop")
    q.resume("alice@lab")
    assert q.held and q.next_job() is None
    q.resume("bob")  # holds nothing: releases nothing
    assert q.held
    q.resume("daemon")
    assert _next(q) == user
    details = [a.detail for a in q.audit() if a.action == "resume"]
    assert details == [
        "released daemon; still held by alice@lab",
        "released alice@lab; still held by daemon",
        "released nothing; still held by daemon",
        "released daemon",
    ]
    q.hold("daemon", "x")
    q.hold("alice@lab", "y")
    q.resume("carol", everyone=True)
    assert not q.held


def test_a_hold_from_an_older_queue_file_is_kept_and_released(tmp_path):
    path = tmp_path / "jobs.json"
    old = {"format": "ionpilot.jobs/1", "journal_entry": 0, "held": True,
           "hold_reason": "recovery", "seq": 0, "jobs": [], "audit": []}  # fmt: skip
    path.write_text(json.dumps(old))
    q = JobQueue(path, clock=Clock())
    assert q.hold_state()["holds"] == [{"by": "", "reason": "recovery", "since_s": None}]
    q.resume("daemon")
    assert not q.held


def test_frequent_clock_jobs_never_push_a_users_result_out(tmp_path):
    clock = Clock()
    q = JobQueue(None, clock=clock, max_finished=3, max_finished_clock=3)
    schedule = clock_interrogation(DeviceSettings()).dumps()
    user = q.submit(BELL, submitter="alice")
    q.run_next(lambda job: {"counts": {"0": 1}})
    for _ in range(10):
        q.submit(schedule, submitter="daemon", kind="clock")
        q.run_next(lambda job: {"counts": {"0": 1}})
    assert q.get(user).state == "done"
    assert len([j for j in q.jobs() if j.kind == "clock"]) == 3
