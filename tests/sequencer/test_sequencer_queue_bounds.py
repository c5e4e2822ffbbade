"""The job queue for weeks of jobs: a change costs one journal line, not a rewrite of every job
and the whole audit trail; the snapshot is rewritten now and then, atomically; a power cut that
tears the last journal line or a snapshot that cannot be read never stops the next start."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ionpilot.sequencer import JobQueue

V3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
BELL = V3 + "qubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n"
RESULT = {"counts": {"00": 50, "11": 50}, "metadata": {"device": "x" * 2000}}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def run_jobs(q: JobQueue, clock: Clock, n: int) -> None:
    for _ in range(n):
        job_id = q.submit(BELL, submitter="alice")
        clock.t += 1
        job = q.next_job()
        assert job is not None and job.job_id == job_id
        clock.t += 1
        q.finish(job_id, result=RESULT)


def test_bytes_written_per_job_do_not_grow_with_the_history(tmp_path: Path) -> None:
    clock = Clock()
    q = JobQueue(
        tmp_path / "jobs.json", clock=clock, max_finished=50, max_audit=300, compact_every=100
    )
    run_jobs(q, clock, 160)  # finished jobs and audit trail at their bounds
    start = q.bytes_written
    run_jobs(q, clock, 100)
    early = (q.bytes_written - start) / 100
    run_jobs(q, clock, 300)
    start = q.bytes_written
    run_jobs(q, clock, 100)
    late = (q.bytes_written - start) / 100
    assert late < 1.1 * early
    # before the journal every change rewrote every kept job: 3 x 50 jobs x 2 kB per job
    assert late < 3 * 50 * 2000 / 10
    assert len(q.jobs()) == 50 and len(q.audit()) == 300
    lines = (tmp_path / "jobs.json.journal").read_bytes().count(b"\n")
    assert lines <= 100


def test_restart_after_many_changes_loses_nothing(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "jobs.json"
    q = JobQueue(path, clock=clock, max_finished=20, compact_every=7)
    run_jobs(q, clock, 30)
    waiting = q.submit(BELL, submitter="bob", priority=3)
    q.hold("servo", "ion loss")
    again = JobQueue(path, clock=clock, max_finished=20)
    assert [j.job_id for j in again.jobs()] == [j.job_id for j in q.jobs()]
    assert again.get(waiting).state == "queued" and again.held
    assert [(a.job_id, a.action) for a in again.audit()] == [
        (a.job_id, a.action) for a in q.audit()
    ]
    assert again.get(q.jobs("done")[-1].job_id).result == RESULT


def test_torn_last_journal_line_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "jobs.json"
    q = JobQueue(path, clock=clock)
    a = q.submit(BELL, submitter="alice")
    b = q.submit(BELL, submitter="alice")
    journal = path.with_name("jobs.json.journal")
    data = journal.read_bytes()
    journal.write_bytes(data[: len(data) - 25])  # the power went during the second append
    again = JobQueue(path, clock=clock)
    assert again.get(a).state == "queued"
    assert [j.job_id for j in again.jobs()] == [a]
    assert b not in {j.job_id for j in again.jobs()}
    c = again.submit(BELL, submitter="alice")  # and the queue goes on from a clean journal
    assert [j.job_id for j in JobQueue(path, clock=clock).jobs()] == [a, c]


def test_unreadable_snapshot_is_set_aside_and_the_service_starts(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "jobs.json"
    q = JobQueue(path, clock=clock, compact_every=1000)
    a = q.submit(BELL, submitter="alice")
    path.write_bytes(b'{"format": "ionpilot.jobs/1", "jobs": [{"job_i')  # a damaged disk
    again = JobQueue(path, clock=clock)  # no exception: the start is not blocked
    assert again.load_error is not None and "moved to jobs.json.corrupt-" in again.load_error
    assert again.get(a).state == "queued"  # recovered from the journal
    assert "restore_failed" in [r.action for r in again.audit()]
    assert len(list(tmp_path.glob("jobs.json.corrupt-*"))) == 1
    json.loads(path.read_text())  # a fresh, readable snapshot


def test_crash_between_snapshot_and_journal_truncation_replays_nothing_twice(
    tmp_path: Path, monkeypatch
) -> None:
    clock = Clock()
    path = tmp_path / "jobs.json"
    q = JobQueue(path, clock=clock, compact_every=3)
    for _ in range(3):
        q.submit(BELL, submitter="alice")
    journal = path.with_name("jobs.json.journal")
    before = journal.read_bytes()
    q.submit(BELL, submitter="alice")  # compacts: snapshot written, journal emptied
    journal.write_bytes(before)  # as if the process died before the truncation
    again = JobQueue(path, clock=clock)
    assert len(again.jobs()) == 4
    assert [r.action for r in again.audit()].count("submit") == 4


def test_snapshot_is_replaced_atomically_with_fsync(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    clock = Clock()
    path = tmp_path / "jobs.json"
    q = JobQueue(path, clock=clock, compact_every=2)
    q.submit(BELL, submitter="alice")
    assert synced == [str(path.with_name("jobs.json.journal"))]  # each change is durable
    synced.clear()
    q.submit(BELL, submitter="alice")
    q.submit(BELL, submitter="alice")  # the third change compacts
    temporary, directory, journal = synced[-3:]
    assert Path(temporary).name.startswith(".jobs.json.")
    assert directory == str(tmp_path)
    assert journal == str(path.with_name("jobs.json.journal"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.json", "jobs.json.journal"]


def test_a_long_kept_history_is_not_rewritten_every_few_changes(tmp_path: Path) -> None:
    # weeks of jobs: the audit trail at 20 000 records (2 MB); each change must still cost a
    # line, and the snapshot is rewritten only once the journal holds a quarter of its size
    path = tmp_path / "jobs.json"
    audit = [
        {"job_id": f"{i:012x}", "action": "done", "who": "sequencer", "at_s": 1000.0 + i}
        | {"duration_s": 0.01, "detail": ""}
        for i in range(20_000)
    ]
    snapshot = {"format": "ionpilot.jobs/1", "held": False, "seq": 0, "jobs": [], "audit": audit}
    path.write_text(json.dumps(snapshot))
    clock = Clock()
    q = JobQueue(path, clock=clock, max_finished=50, max_audit=20_000, compact_every=10)
    size = path.stat().st_size
    start = q.bytes_written
    run_jobs(q, clock, 200)
    per_job = (q.bytes_written - start) / 200
    assert per_job < size / 50  # rewriting the snapshot every 10 changes: 2/3 of it per job
    assert len(q.audit()) == 20_000
