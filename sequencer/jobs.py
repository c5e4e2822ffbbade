"""The job queue: priorities, due times, cancellation, hold/resume for recoveries, an audit trail,
persisted after every change so a restart loses nothing.

Persistence is a snapshot (`jobs.json`, replaced atomically: temporary file, fsync, rename, fsync
of the directory) plus a journal (`jobs.json.journal`, one JSON line per change, appended and
fsynced). A change costs one short line, not a rewrite of every job and the whole audit trail;
the snapshot is rewritten when the journal has `compact_every` lines and a quarter of the
snapshot's bytes (so rewriting it costs at most four times what the journal took, whatever the
size of the kept history). A line torn by a power cut
ends the replay; a snapshot that cannot be read is moved aside (`jobs.json.corrupt-<time>`) and
the queue starts from the journal, so a bad file never stops the service from starting again.

In-process and transport-free: the sequencer service will serve these methods on the bus. Time
comes from an injectable clock. Clock interrogations (`kind="clock"`) are served even while user
jobs are held (each holder's hold on its own: the daemon's recovery and an operator's maintenance
do not release each other's); among ready jobs the highest priority goes first, then the earliest
due time, then submission order. A job that was running when the process stopped is queued again
on restart (and the audit says so).

A clock job of a borrower's (the clock laser or the trap lent by the daemon; any submitter but
`SERVO`) passes only the lock's own hold (`LOCK_HOLDER`, which the loan itself puts on): any
other hold, a recovery's or an operator's, holds it like a user job.

Clock jobs are the servo's, several a second, and their caller waits for each: they live in memory
only (never journalled: a restart loses the ones in flight, and their callers, which time out and
ask again), the last `max_finished_clock` finished ones are kept for `list kind=clock`, and the
audit gets one `clock_jobs` record per `clock_audit_every` finished clock jobs or
`clock_audit_period_s` (counts done/failed/cancelled, controller seconds, the last error), so a
day of interrogations costs a few hundred audit records and journal lines, not millions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ionpilot.core.durable import write_atomically
from ionpilot.sequencer.errors import JobError

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
JOB_KINDS = ("user", "clock")
SERVO = "daemon"  # the clock servo: its clock jobs pass every hold
LOCK_HOLDER = "daemon.lock"  # the lock's own hold (not `locked`), which a borrower's jobs pass
USER_PRIORITIES = (-100, 100)  # a user job cannot outrank the lab's own (clock) jobs
DUE_PAST_S = 3600.0  # a due time further back is a mistake (units, epoch), not "now"
DUE_AHEAD_S = 366 * 86400.0  # a due time further ahead is a mistake, and would never run


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
    # what `program` is: OpenQASM text, or a pulse schedule's JSON (a clock job's, or a user's
    # own schedule, e.g. a detection-only fluorescence count)
    program_format: str = "qasm"


@dataclass(frozen=True)
class AuditRecord:
    """Who did what to which job, when, and how long it took (for runs)."""

    job_id: str
    action: str
    who: str
    at_s: float
    duration_s: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Hold:
    """One holder's hold on user jobs: why, and since when (None: from an older queue file)."""

    reason: str
    since_s: float | None


@dataclass
class ClockTally:
    """Finished clock jobs since the last `clock_jobs` audit record."""

    done: int = 0
    failed: int = 0
    cancelled: int = 0
    busy_s: float = 0.0
    since_s: float | None = None
    last_error: str = ""

    @property
    def count(self) -> int:
        return self.done + self.failed + self.cancelled


@dataclass
class _State:
    jobs: dict[str, Job] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    holds: dict[str, Hold] = field(default_factory=dict)  # holder -> hold
    seq: int = 0

    @property
    def held(self) -> bool:
        return bool(self.holds)

    def holds_json(self) -> dict[str, Any]:
        return {who: asdict(hold) for who, hold in self.holds.items()}


SNAPSHOT_FORMAT = "ionpilot.jobs/1"


class JobQueue:
    """Bounded, persistent queue of jobs; every mutation is journalled next to `path` (if given)."""

    def __init__(
        self,
        path: Path | str | None = None,
        clock: Callable[[], float] = time.time,
        max_queued: int = 1000,
        max_finished: int = 1000,
        max_audit: int = 100_000,
        *,
        max_queued_bytes: int = 20_000_000,
        max_finished_bytes: int = 50_000_000,
        compact_every: int = 1000,
        max_finished_clock: int = 100,
        clock_audit_every: int = 1000,
        clock_audit_period_s: float = 600.0,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.journal_path = (
            self.path.with_name(self.path.name + ".journal") if self.path is not None else None
        )
        self.clock = clock
        self.max_queued = max_queued
        self.max_finished = max_finished
        # programs are kept in memory and in the snapshot: bounded in bytes as well as in jobs
        # (a thousand 200 kB programs would be 200 MB in the service and in every snapshot)
        self.max_queued_bytes = max_queued_bytes
        self.max_finished_bytes = max_finished_bytes
        self.max_audit = max_audit
        self.compact_every = max(1, compact_every)
        self.max_finished_clock = max(1, max_finished_clock)
        self.clock_audit_every = max(1, clock_audit_every)
        self.clock_audit_period_s = clock_audit_period_s
        self.clock_tally = ClockTally()  # finished clock jobs not yet in the audit
        self._state = _State()
        self._changed: dict[str, Job] = {}  # jobs changed since the last journal line
        self._dropped: list[str] = []
        self._new_audit: list[AuditRecord] = []
        self._journal_lines = 0  # lines in the journal since the snapshot
        self._journal_bytes = 0
        self._snapshot_bytes = 0
        self._entry = 0  # number of the last journal line written or replayed
        self.load_error: str | None = None  # why the snapshot was set aside at start, if it was
        self.bytes_written = 0  # snapshot and journal bytes written by this process
        if self.path is not None and (self.path.exists() or self._journal_exists()):
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
        program_format: str | None = None,
    ) -> str:
        """Queue a program; returns its job id. Refused (JobError, nothing queued) if the queue
        is full, or the due time or a user job's priority is out of range."""
        if kind not in JOB_KINDS:
            raise JobError(f"unknown job kind '{kind}' (one of {', '.join(JOB_KINDS)})")
        if shots < 1:
            raise JobError("shots must be at least 1")
        lo, hi = USER_PRIORITIES
        if kind == "user" and not lo <= priority <= hi:
            raise JobError(f"priority {priority} outside {lo}..{hi} (user jobs; higher runs first)")
        now = self.clock()
        if due_s is not None:
            check_due(due_s, now)
        waiting = [j for j in self._state.jobs.values() if j.state == "queued"]
        if len(waiting) >= self.max_queued:
            raise JobError(f"queue full ({self.max_queued} jobs waiting)")
        waiting_bytes = sum(len(j.program) for j in waiting)
        if waiting_bytes + len(program) > self.max_queued_bytes:
            raise JobError(
                f"queue full: {waiting_bytes / 1e6:.1f} MB of programs waiting and this one is "
                f"{len(program) / 1e3:.0f} kB (at most {self.max_queued_bytes / 1e6:g} MB waiting)"
            )
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
            program_format=program_format or ("schedule" if kind == "clock" else "qasm"),
        )
        self._state.jobs[job.job_id] = job
        if kind == "clock":  # in memory only, audited in aggregate when finished
            return job.job_id
        self._changed[job.job_id] = job
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
        if job.kind == "clock":
            self._clock_finished(job, 0.0, "")
            self._prune()
            return
        self._changed[job_id] = job
        self._audit(job_id, "cancel", who)
        self._prune()
        self._save()

    def hold(self, who: str, reason: str) -> None:
        """Hold user jobs (e.g. while a recovery runs) until `who` resumes them; clock
        interrogations still run. A holder that holds again changes its reason, not its
        since."""
        mine = self._state.holds.get(who)
        self._state.holds[who] = Hold(reason, self.clock() if mine is None else mine.since_s)
        self._audit("", "hold", who, detail=reason)
        self._save()

    def resume(self, who: str, *, everyone: bool = False) -> None:
        """Release `who`'s hold (and one of an unknown holder, from an older queue file), or
        with `everyone` every hold; user jobs run again when no hold is left."""
        released = (
            list(self._state.holds)
            if everyone
            else [w for w in (who, "") if w in self._state.holds]
        )
        for holder in released:
            del self._state.holds[holder]
        left = ", ".join(self._state.holds)
        detail = f"released {', '.join(released) or 'nothing'}" + (
            f"; still held by {left}" if left else ""
        )
        self._audit("", "resume", who, detail=detail)
        self._save()

    @property
    def held(self) -> bool:
        """Whether user jobs are held."""
        return self._state.held

    def hold_state(self) -> dict[str, Any]:
        """Whether user jobs are held; each hold (by, reason, since_s: Unix s), oldest first;
        and in one line each: every reason, every holder, the earliest since (None if free)."""
        holds = sorted(
            ({"by": who, **asdict(h)} for who, h in self._state.holds.items()),
            key=lambda h: h["since_s"] if h["since_s"] is not None else -math.inf,
        )
        since = [h["since_s"] for h in holds if h["since_s"] is not None]
        return {
            "held": bool(holds),
            "hold_reason": "; ".join(h["reason"] for h in holds),
            "held_by": ", ".join(h["by"] for h in holds),
            "held_since_s": min(since) if since else None,
            "holds": holds,
        }

    def ahead_of(self, job_id: str) -> int:
        """How many queued jobs of the same kind would run before this one (if all were due)."""
        job = self.get(job_id)

        def order(j: Job) -> tuple[int, float, int]:
            return (-j.priority, j.due_s, j.seq)

        return sum(
            1
            for j in self._state.jobs.values()
            if j.state == "queued" and j.kind == job.kind and order(j) < order(job)
        )

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

    def ready(self, kind: str | None = None) -> list[Job]:
        """Queued jobs (of `kind`) that could start now: due, and not held (user jobs, and a
        borrower's clock jobs under a hold other than the lock's own)."""
        now = self.clock()
        holds = self._state.holds
        borrower_held = any(who != LOCK_HOLDER for who in holds)
        return [
            j
            for j in self._state.jobs.values()
            if j.state == "queued"
            and j.due_s <= now
            and (kind is None or j.kind == kind)
            and not (
                (j.kind == "user" and holds)
                or (j.kind == "clock" and j.submitter != SERVO and borrower_held)
            )
        ]

    def next_job(self, who: str = "sequencer", kind: str | None = None) -> Job | None:
        """Start the next ready job (of `kind`, if given), or None if nothing is ready."""
        ready = self.ready(kind)
        if not ready:
            return None
        job = min(ready, key=lambda j: (-j.priority, j.due_s, j.seq))
        job.state = "running"
        job.started_s = self.clock()
        if job.kind == "clock":
            return job
        self._changed[job.job_id] = job
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
        if job.kind == "clock":
            self._clock_finished(job, duration or 0.0, who)
            self._prune()
            return
        self._changed[job_id] = job
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
        record = AuditRecord(job_id, action, who, self.clock(), duration_s, detail)
        self._append_audit(record)
        self._new_audit.append(record)

    def _append_audit(self, record: AuditRecord) -> None:
        audit = self._state.audit
        audit.append(record)
        if len(audit) > self.max_audit:
            del audit[: len(audit) - self.max_audit]

    def _prune(self) -> None:
        """Forget the oldest finished jobs beyond `max_finished` of each kind (so frequent clock
        jobs never push a user's results out), and beyond `max_finished_bytes` of programs."""
        finished = [j for j in self.jobs() if j.state in ("done", "failed", "cancelled")]
        old: list[Job] = []
        for kind in JOB_KINDS:
            mine = [j for j in finished if j.kind == kind]
            keep = self.max_finished_clock if kind == "clock" else self.max_finished
            old += mine[: max(0, len(mine) - keep)]
            kept = mine[max(0, len(mine) - keep) :]
            kept_bytes = sum(len(j.program) for j in kept)
            for job in kept:  # the oldest go first while the kept programs are over budget
                if kept_bytes <= self.max_finished_bytes:
                    break
                old.append(job)
                kept_bytes -= len(job.program)
        for job in old:
            del self._state.jobs[job.job_id]
            if job.kind != "clock":  # clock jobs were never journalled
                self._changed.pop(job.job_id, None)
                self._dropped.append(job.job_id)

    def _clock_finished(self, job: Job, duration_s: float, who: str) -> None:
        """Count a finished clock job; audit the tally when it is full or old enough."""
        tally = self.clock_tally
        now = self.clock()
        if tally.since_s is None:
            tally.since_s = job.submitted_s
        if job.state == "done":
            tally.done += 1
        elif job.state == "failed":
            tally.failed += 1
            tally.last_error = (job.error or "")[:300]
        else:
            tally.cancelled += 1
        tally.busy_s += duration_s
        if (
            tally.count >= self.clock_audit_every
            or now - tally.since_s >= self.clock_audit_period_s
        ):
            self.flush_clock_tally(who or "sequencer")

    def flush_clock_tally(self, who: str = "sequencer") -> None:
        """Write the finished clock jobs not yet audited as one `clock_jobs` record."""
        tally = self.clock_tally
        if tally.count == 0:
            return
        since = tally.since_s if tally.since_s is not None else self.clock()
        detail = (
            f"{tally.done} done, {tally.failed} failed, {tally.cancelled} cancelled since "
            f"{since:.3f}; {tally.busy_s:.3f} s on the controller"
            + (f"; last error: {tally.last_error}" if tally.last_error else "")
        )
        self.clock_tally = ClockTally()
        self._audit("", "clock_jobs", who, duration_s=tally.busy_s, detail=detail)
        self._save()

    # --- persistence ------------------------------------------------------------------------

    def _save(self) -> None:
        """Journal what changed since the last call (one line); compact when the journal is long."""
        changed, self._changed = list(self._changed.values()), {}
        dropped, self._dropped = self._dropped, []
        audit, self._new_audit = self._new_audit, []
        if self.path is None or self.journal_path is None:
            return
        if (
            self._journal_lines >= self.compact_every
            and 4 * self._journal_bytes >= self._snapshot_bytes
        ):
            self._compact()
            return
        self._entry += 1
        line = json.dumps(
            {
                "n": self._entry,
                "seq": self._state.seq,
                "held": self._state.held,
                "holds": self._state.holds_json(),
                "jobs": [asdict(j) for j in changed],
                "drop": dropped,
                "audit": [asdict(a) for a in audit],
            }
        ).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.bytes_written += len(line) + 1
        self._journal_lines += 1
        self._journal_bytes += len(line) + 1

    def checkpoint(self) -> None:
        """Write the snapshot now and empty the journal (a clean stop leaves one plain file)."""
        self.flush_clock_tally()
        if self.path is not None:
            self._compact()

    def _compact(self) -> None:
        """Write the whole state as the snapshot (atomically), then empty the journal."""
        assert self.path is not None and self.journal_path is not None
        data = {
            "format": SNAPSHOT_FORMAT,
            "journal_entry": self._entry,
            "held": self._state.held,
            "holds": self._state.holds_json(),
            "seq": self._state.seq,
            "jobs": [asdict(j) for j in self.jobs() if j.kind != "clock"],
            "audit": [asdict(a) for a in self._state.audit],
        }
        self._snapshot_bytes = write_atomically(self.path, json.dumps(data).encode("utf-8"))
        self.bytes_written += self._snapshot_bytes
        # the snapshot holds every journalled line (entry numbers up to `journal_entry`): a crash
        # before the truncation below only leaves lines that the next load skips
        with contextlib.suppress(FileNotFoundError), open(self.journal_path, "r+b") as handle:
            handle.truncate(0)
            handle.flush()
            os.fsync(handle.fileno())
        self._journal_lines = 0
        self._journal_bytes = 0

    def _journal_exists(self) -> bool:
        return self.journal_path is not None and self.journal_path.exists()

    def _load(self) -> None:
        assert self.path is not None
        state = _State()
        applied = 0
        if self.path.exists():
            try:
                state, applied = self._read_snapshot()
            except JobError as exc:
                self.load_error = str(exc)
                aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
                os.replace(self.path, aside)
                self.load_error += f"; moved to {aside.name}, starting from the journal"
                state, applied = _State(), 0
        self._state = state
        self._entry = applied
        self._replay(applied)
        if self.load_error is not None:
            self._audit("", "restore_failed", "sequencer", detail=self.load_error)
        for job in self.jobs():
            if job.kind == "clock":  # from an older file: their callers are gone
                del self._state.jobs[job.job_id]
        for job in self.jobs("running"):
            job.state = "queued"
            job.started_s = None
            self._audit(job.job_id, "requeue", "sequencer", detail="was running when stopped")
        self._changed, self._dropped, self._new_audit = {}, [], []
        self._compact()  # a clean snapshot and an empty journal to append to

    def _read_snapshot(self) -> tuple[_State, int]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            state = _State(
                jobs={j["job_id"]: Job(**j) for j in data["jobs"]},
                audit=[AuditRecord(**a) for a in data["audit"]][-self.max_audit :],
                holds=_holds(data),
                seq=int(data["seq"]),
            )
            applied = int(data.get("journal_entry", 0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise JobError(f"cannot read job queue file {self.path}: {exc}") from None
        return state, applied

    def _replay(self, applied: int) -> None:
        """Apply the journal lines newer than the snapshot; a torn or bad line ends the replay."""
        if self.journal_path is None or not self.journal_path.exists():
            return
        state = self._state
        with open(self.journal_path, "rb") as handle:
            for raw in handle:
                try:
                    entry = json.loads(raw)
                    n = int(entry["n"])
                    if n <= applied:
                        continue
                    jobs = [Job(**j) for j in entry["jobs"]]
                    audit = [AuditRecord(**a) for a in entry["audit"]]
                    dropped = [str(d) for d in entry["drop"]]
                    seq, holds = int(entry["seq"]), _holds(entry)
                except (ValueError, KeyError, TypeError):
                    break  # written last, torn by a crash: everything before it is kept
                for job in jobs:
                    state.jobs[job.job_id] = job
                for job_id in dropped:
                    state.jobs.pop(job_id, None)
                for record in audit:
                    self._append_audit(record)
                state.seq, state.holds = seq, holds
                self._entry = n


def check_due(due_s: float, now_s: float) -> None:
    """Refuse (JobError) a due time that is not a finite Unix time from `DUE_PAST_S` before now
    to `DUE_AHEAD_S` ahead: NaN or +inf would never run, -inf or 0 would jump the queue."""
    lo, hi = now_s - DUE_PAST_S, now_s + DUE_AHEAD_S
    if not (math.isfinite(due_s) and lo <= due_s <= hi):
        raise JobError(
            f"due_s {due_s!r} is not a Unix time in seconds from {DUE_PAST_S / 3600:g} h ago to "
            f"{DUE_AHEAD_S / 86400:g} days ahead ({lo:.0f}..{hi:.0f}); omit it to run when ready"
        )


def _holds(data: dict[str, Any]) -> dict[str, Hold]:
    """The holds of a snapshot or journal line; one of an unknown holder from an older file
    (which had only `held` and `hold_reason`). Raises KeyError/TypeError/ValueError if bad."""
    if "holds" not in data:
        held = bool(data["held"])
        return {"": Hold(str(data.get("hold_reason", "")), None)} if held else {}
    return {
        str(who): Hold(str(h["reason"]), None if h["since_s"] is None else float(h["since_s"]))
        for who, h in dict(data["holds"]).items()
    }
