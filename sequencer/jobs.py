"""The job queue: priorities, due times, cancellation, hold/resume for recoveries, an audit trail,
persisted to a JSON file after every change so a restart loses nothing.

In-process and transport-free: the sequencer service will serve these methods on the bus. Time
comes from an injectable clock. Clock interrogations (`kind="clock"`) are served even while user
jobs are held for a recovery; among ready jobs the highest priority goes first, then the earliest
due time, then submission order. A job that was running when the process stopped is queued again
on restart (and the audit says so).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ionpilot.sequencer.errors import JobError

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
JOB_KINDS = ("user", "clock")


@dataclass
class Job:
    """One program to run, with who asked for it and what became of it."""

    job_id: str
    kind: str
    program: str
    shots: int
    backend: str
    priority: int
    due_s: float
    submitter: str
    submitted_s: float
    seq: int
    state: str = "queued"
    started_s: float | None = None
    finished_s: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """Who did what to which job, when, and how long it took (for runs)."""

    job_id: str
    action: str
    who: str
    at_s: float
    duration_s: float | None = None
    detail: str = ""


@dataclass
class _State:
    jobs: dict[str, Job] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    held: bool = False
    hold_reason: str = ""
    seq: int = 0


class JobQueue:
    """Bounded, persistent queue of jobs; every mutation is written to `path` (if given)."""

    def __init__(
        self,
        path: Path | str | None = None,
        clock: Callable[[], float] = time.time,
        max_queued: int = 1000,
        max_finished: int = 1000,
        max_audit: int = 100_000,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.clock = clock
        self.max_queued = max_queued
        self.max_finished = max_finished
        self.max_audit = max_audit
        self._state = _State()
        if self.path is not None and self.path.exists():
            self._load()

    # --- requests -------------------------------------------------------------------------

    def submit(
        self,
        program: str,
        *,
        submitter: str,
        shots: int = 100,
        priority: int = 0,
        due_s: float | None = None,
        kind: str = "user",
        backend: str = "sim",
    ) -> str:
        """Queue a program; returns its job id. Refused (JobError) if the queue is full."""
        if kind not in JOB_KINDS:
            raise JobError(f"unknown job kind '{kind}' (one of {', '.join(JOB_KINDS)})")
        if shots < 1:
            raise JobError("shots must be at least 1")
        queued = sum(1 for j in self._state.jobs.values() if j.state == "queued")
        if queued >= self.max_queued:
            raise JobError(f"queue full ({self.max_queued} jobs waiting)")
        now = self.clock()
        self._state.seq += 1
        job = Job(
            job_id=uuid.uuid4().hex[:12],
            kind=kind,
            program=program,
            shots=shots,
            backend=backend,
            priority=priority,
            due_s=now if due_s is None else due_s,
            submitter=submitter,
            submitted_s=now,
            seq=self._state.seq,
        )
        self._state.jobs[job.job_id] = job
        self._audit(job.job_id, "submit", submitter, detail=f"{kind} priority={priority}")
        self._save()
        return job.job_id

    def cancel(self, job_id: str, who: str) -> None:
        """Cancel a queued job (a running job finishes; the lab does not stop mid-pulse)."""
        job = self.get(job_id)
        if job.state != "queued":
            raise JobError(f"job {job_id} is {job.state}; only queued jobs can be cancelled")
        job.state = "cancelled"
        job.finished_s = self.clock()
        self._audit(job_id, "cancel", who)
        self._prune()
        self._save()

    def hold(self, who: str, reason: str) -> None:
        """Hold user jobs (e.g. while a recovery runs); clock interrogations still run."""
        self._state.held = True
        self._state.hold_reason = reason
        self._audit("", "hold", who, detail=reason)
        self._save()

    def resume(self, who: str) -> None:
        """Serve user jobs again."""
        self._state.held = False
        self._state.hold_reason = ""
        self._audit("", "resume", who)
        self._save()

    @property
    def held(self) -> bool:
        """Whether user jobs are held."""
        return self._state.held

    def get(self, job_id: str) -> Job:
        """The job with this id (JobError if unknown)."""
        job = self._state.jobs.get(job_id)
        if job is None:
            raise JobError(f"unknown job '{job_id}'")
        return job

    def jobs(self, state: str | None = None) -> list[Job]:
        """Jobs (optionally in one state), in submission order."""
        out = [j for j in self._state.jobs.values() if state is None or j.state == state]
        return sorted(out, key=lambda j: j.seq)

    def audit(self) -> list[AuditRecord]:
        """The audit trail, oldest first."""
        return list(self._state.audit)

    # --- serving ----------------------------------------------------------------------------

    def next_job(self, who: str = "sequencer") -> Job | None:
        """Start the next ready job (due, not held), or None if nothing is ready."""
        now = self.clock()
        ready = [
            j
            for j in self._state.jobs.values()
            if j.state == "queued"
            and j.due_s <= now
            and (j.kind == "clock" or not self._state.held)
        ]
        if not ready:
            return None
        job = min(ready, key=lambda j: (-j.priority, j.due_s, j.seq))
        job.state = "running"
        job.started_s = now
        self._audit(job.job_id, "start", who)
        self._save()
        return job

    def finish(
        self,
        job_id: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        who: str = "sequencer",
    ) -> None:
        """Record the end of a running job (done with a result, or failed with an error)."""
        job = self.get(job_id)
        if job.state != "running":
            raise JobError(f"job {job_id} is {job.state}, not running")
        now = self.clock()
        job.state = "failed" if error is not None else "done"
        job.finished_s = now
        job.result = result
        job.error = error
        duration = now - job.started_s if job.started_s is not None else None
        self._audit(job_id, job.state, who, duration_s=duration, detail=error or "")
        self._prune()
        self._save()

    def run_next(
        self, execute: Callable[[Job], dict[str, Any]], who: str = "sequencer"
    ) -> Job | None:
        """Start the next ready job, execute it, and record the outcome."""
        job = self.next_job(who)
        if job is None:
            return None
        try:
            result = execute(job)
        except Exception as exc:  # the job fails, the queue goes on
            self.finish(job.job_id, error=f"{type(exc).__name__}: {exc}", who=who)
        else:
            self.finish(job.job_id, result=result, who=who)
        return job

    # --- bookkeeping ------------------------------------------------------------------------

    def _audit(
        self, job_id: str, action: str, who: str, duration_s: float | None = None, detail: str = ""
    ) -> None:
        self._state.audit.append(AuditRecord(job_id, action, who, self.clock(), duration_s, detail))
        if len(self._state.audit) > self.max_audit:
            del self._state.audit[: len(self._state.audit) - self.max_audit]

    def _prune(self) -> None:
        finished = [j for j in self.jobs() if j.state in ("done", "failed", "cancelled")]
        for job in finished[: max(0, len(finished) - self.max_finished)]:
            del self._state.jobs[job.job_id]

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "format": "ionpilot.jobs/1",
            "held": self._state.held,
            "hold_reason": self._state.hold_reason,
            "seq": self._state.seq,
            "jobs": [asdict(j) for j in self.jobs()],
            "audit": [asdict(a) for a in self._state.audit],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text())
            state = _State(
                jobs={j["job_id"]: Job(**j) for j in data["jobs"]},
                audit=[AuditRecord(**a) for a in data["audit"]],
                held=bool(data["held"]),
                hold_reason=str(data.get("hold_reason", "")),
                seq=int(data["seq"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise JobError(f"cannot read job queue file {self.path}: {exc}") from None
        self._state = state
        for job in self.jobs("running"):
            job.state = "queued"
            job.started_s = None
            self._audit(job.job_id, "requeue", "sequencer", detail="was running when stopped")
        self._save()
