"""The recovery engine: watches the health, runs one playbook at a time by priority, holds the
clock lock and the user jobs while it works, and escalates to the safe state when a playbook
runs out of retries or time, repeats too often, or something trips that no playbook knows.

Step-based like the locks: `tick()` does a little and returns how long until it wants to be
called again, so the daemon's thread and the accelerated simulation drive it the same way.
Every decision goes to the audit log with its reason.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ionpilot.core.clock import Clock
from ionpilot.servo.audit import AuditLog
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.health import HealthMonitor, Severity
from ionpilot.servo.playbooks import (
    Playbook,
    RecoveryContext,
    StepResult,
    StepStatus,
    holdover_error_hz,
    within_line,
)
from ionpilot.servo.seams import LabError, LabInterface
from ionpilot.servo.settings import RecoverySettings
from ionpilot.servo.uptime import FaultRecord, UptimeAccount

JobsHook = Callable[[bool, str], None]  # (hold, reason): hold or release queued user jobs
RestartHook = Callable[[str], None]  # restart a supervised process by name
SenseHook = Callable[[float], None]  # read the signals into the health monitor
KEEP_ESCALATIONS = 100  # escalations kept in memory (all are in the audit log)


@dataclass
class Run:
    """One playbook in progress."""

    playbook: Playbook
    record: FaultRecord
    started_s: float
    attempt: int = 0
    index: int = 0
    step_started_s: float | None = None
    resume_wait_since: float | None = None
    next_at: float = -math.inf
    scratch: dict[str, object] = field(default_factory=dict)


class RecoveryEngine:
    """Playbooks against the lab, on the clock seam."""

    def __init__(
        self,
        playbooks: list[Playbook],
        settings: RecoverySettings,
        health: HealthMonitor,
        *,
        lock: ClockLock,
        lab: LabInterface,
        clock: Clock,
        auxes: dict[str, AuxLock] | None = None,
        audit: AuditLog | None = None,
        uptime: UptimeAccount | None = None,
        sense: SenseHook | None = None,
        hold_jobs: JobsHook | None = None,
        restart_process: RestartHook | None = None,
    ) -> None:
        self.playbooks = sorted(playbooks, key=lambda b: b.priority)
        self.by_name = {b.name: b for b in self.playbooks}
        self.settings = settings
        self.health = health
        self.lock = lock
        self.lab = lab
        self.clock = clock
        self.auxes = auxes or {}
        self.audit = audit if audit is not None else AuditLog(clock)
        self.uptime = uptime if uptime is not None else UptimeAccount(clock.now())
        self.sense = sense
        self.hold_jobs = hold_jobs
        self.restart_process = restart_process
        self.ctx = RecoveryContext(
            lab, clock, health, settings, lock, self.auxes, restart_process=restart_process
        )
        self.active: Run | None = None
        self.queue: dict[str, float] = {}  # playbook name → trip time
        self.in_episode = False
        self.safe = False
        self.escalations: list[dict[str, object]] = []  # the newest KEEP_ESCALATIONS
        self.escalation_count = 0
        self.awaiting_lock: list[FaultRecord] = []
        self._trips: dict[str, deque[float]] = {}
        self._next_scheduled = {
            b.name: clock.now() + b.period_s for b in self.playbooks if b.period_s > 0
        }
        self._next_due_scheduled = min(self._next_scheduled.values(), default=math.inf)
        self._lock_was_locked = False
        self._force_reacquire = False
        self._paused_at = math.nan
        self._unwatched_since: dict[str, float] = {}
        self._lab_error_since: float | None = None
        self._covered = {c.signal for b in self.playbooks for c in b.trip}
        self._pending_records: dict[str, FaultRecord] = {}
        self._last_scheduled: dict[str, float] = {}  # pre-empted, waiting to restart
        # playbook kinds that must not start (the trap lent to an experiment: its empty trap
        # is no ion loss); the lock stays in its hold-over meanwhile
        self.held: dict[str, str] = {}  # kind -> who holds it

    # ------------------------------------------------------------------ public

    @property
    def busy(self) -> bool:
        """A recovery episode is in progress (the lock must not be stepped)."""
        return self.in_episode or self.safe

    def tick(self) -> float:
        """One round: read the signals, trip, run the active step, finish an episode. Returns
        seconds until the next call is useful (the health period when idle)."""
        now = self.clock.now()
        period = self.settings.health_period
        if self.sense is not None:
            self._trip_major()  # seen between ticks (the clock shots' fluorescence)
            self.sense(now)
        worst = self.health.evaluate()
        if worst >= Severity.MAJOR:
            self._trip_major()  # reported during the sensor pass
        self._stamp_recovered(now)
        if self.safe:
            return period
        if (
            worst < Severity.MAJOR
            and not self.in_episode
            and self.lock.state is LockState.LOCKED
            and now < self._next_due_scheduled
        ):
            self._unwatched_since.clear()
            self._lab_error_since = None
            return period  # the fast path: nothing can trip
        self._trip(now)
        if self.active is not None and self.queue:
            self._maybe_preempt(now)
        if self.active is None and self.queue:
            self._start_next(now)
        if self.active is not None:
            if self.active.next_at > now:
                return min(period, self.active.next_at - now)
            return self._advance(now)
        if self.in_episode:
            self._end_episode(now)
            return 0.0
        self._watch_idle(now)
        return period

    def operator_resume(self, who: str) -> None:
        """Leave the safe state (the operator has looked): locks restart, trips re-arm."""
        if not self.safe:
            return
        self.audit.record("operator", "leave_safe_state", f"resumed by {who}", source="operator")
        self.safe = False
        self.queue.clear()
        self._trips.clear()
        for aux in self.auxes.values():
            if aux.lent:  # its borrower still has the laser: started when given back
                continue
            try:
                aux.start()
            except LabError as exc:
                self.audit.record("operator", "aux_restart_failed", str(exc), severity="MAJOR")
        self.lock.reacquire(f"operator {who} left the safe state")
        self.in_episode = False
        if self.hold_jobs is not None:
            self.hold_jobs(False, f"operator {who} left the safe state")

    def chain_back(self, who: str) -> bool:
        """The trap is back from `who`: True if it holds the whole chain (the caller resumes
        the lock); otherwise the ion-loss playbook is queued, which reloads and verifies."""
        now = self.clock.now()
        try:
            whole = self.ctx.ion_present()
        except LabError as exc:
            self.audit.record("trap_back", "check", f"from {who}: {exc}", severity="MINOR")
            whole = False
        if whole:
            self.audit.record("trap_back", "verified", f"from {who}: the chain is whole")
            return True
        book = next((b for b in self.playbooks if b.kind == "ion_loss"), None)
        if book is not None and book.name not in self.queue:
            self.queue[book.name] = now
            self.audit.record("trip", book.name, f"trap back from {who} incomplete")
        return False

    def acknowledge(self, who: str, signals: list[str] | None = None) -> list[str]:
        """An operator acknowledged alarms (a bus command); recorded with the sender."""
        done = self.health.acknowledge(signals, who)
        self.audit.record(
            "ack", ",".join(done) or "nothing", f"acknowledged by {who}", source="operator"
        )
        return done

    # ------------------------------------------------------------------ trips

    def _trip_major(self) -> None:
        """A limit reported broken (MAJOR) trips its playbook at once, at the present time: not
        after the sensor pass (live, bus reads for up to ~1 s), nor a tick later because it was
        reported after the tick began. Staleness (INVALID) keeps the tick's own time: a long
        read in the pass (a 5 s micromotion probe) must not make the heartbeat look stale."""
        if not self.safe and any(
            s.severity is Severity.MAJOR for s in self.health.signals.values()
        ):
            self._trip(self.clock.now(), major_only=True)

    def _trip(self, now: float, major_only: bool = False) -> None:
        """Queue the playbooks whose trip condition holds (`major_only`: only those tripped by
        a MAJOR signal, not staleness nor a schedule)."""
        active = self.active.playbook.name if self.active is not None else None
        for book in self.playbooks:
            if book.name == active or book.name in self.queue or book.kind in self.held:
                continue
            condition = book.tripped_by(self.health, now)
            if major_only and (
                condition is None or self.health.severity(condition.signal) is not Severity.MAJOR
            ):
                continue
            reason = condition.describe(self.health) if condition is not None else ""
            due = self._next_scheduled.get(book.name)
            if condition is None and due is not None and now >= due:
                reason = f"scheduled every {book.period_s:g} s"
                condition_met = True
            else:
                condition_met = condition is not None
            if not condition_met:
                continue
            if due is not None:
                self._next_scheduled[book.name] = now + book.period_s
                self._next_due_scheduled = min(self._next_scheduled.values())
                if condition is None:
                    self._last_scheduled[book.name] = now
            self.queue[book.name] = now
            self.audit.record("trip", book.name, reason, severity="MINOR")
            trips = self._trips.setdefault(book.kind, deque())
            trips.append(now)
            while trips and trips[0] < now - self.settings.repeat_window:
                trips.popleft()
            if len(trips) > self.settings.repeat_limit:
                self._escalate(
                    now,
                    book.kind,
                    f"{book.kind} tripped {len(trips)} times within "
                    f"{self.settings.repeat_window:g} s",
                )
                return

    def _maybe_preempt(self, now: float) -> None:
        assert self.active is not None
        best = min(self.queue, key=lambda n: self.by_name[n].priority)
        run = self.active
        if self.by_name[best].priority >= run.playbook.priority:
            return
        self.audit.record(
            "preempt",
            run.playbook.name,
            f"{best} comes first (priority {self.by_name[best].priority})",
            severity="MINOR",
        )
        self._abort(run)
        self.queue[run.playbook.name] = run.record.tripped_s
        self._pending_records[run.playbook.name] = run.record
        self.active = None

    def _start_next(self, now: float) -> None:
        name = min(self.queue, key=lambda n: self.by_name[n].priority)
        tripped = self.queue.pop(name)
        book = self.by_name[name]
        record = self._pending_records.pop(name, None)
        if record is None:
            scheduled = book.period_s > 0 and tripped == self._last_scheduled.get(name)
            # at its trip time at the earliest: one tripped at once during this tick's sensor
            # pass (`_trip_major`) is judged on its own time, not the tick's earlier start
            if not scheduled and book.tripped_by(self.health, max(now, tripped)) is None:
                self.audit.record(
                    "cleared",
                    name,
                    "the trip condition no longer holds (an earlier recovery fixed it)",
                )
                return
            record = self.uptime.fault_tripped(book.kind, book.name, tripped, "")
        if not self.in_episode:
            self._begin_episode(now, book)
        self.active = Run(book, record, now)
        self.ctx.reset(book.target)
        self.audit.record("start", name, f"playbook started (tripped at {tripped:.1f} s)")

    def _begin_episode(self, now: float, book: Playbook) -> None:
        self.in_episode = True
        self._force_reacquire = False
        state = self.lock.state
        self._lock_was_locked = state in (LockState.LOCKED, LockState.HOLDOVER)
        self.ctx.reference_optical_hz = (
            self.lock.last_optical.laser_frequency_hz if self.lock.last_optical else None
        )
        if state is LockState.LOCKED:
            self.lock.pause(f"recovery: {book.name}")
        if self.lock.state is LockState.HOLDOVER:
            self._paused_at = self.lock.holdover_since_s
        self.audit.record("holdover", "clock_lock", f"{book.name}: lock {state.value} → hold-over")
        if self.hold_jobs is not None:
            self.hold_jobs(True, f"recovery: {book.name}")
            self.audit.record("jobs", "hold", f"recovery: {book.name}")

    # ------------------------------------------------------------------ steps

    def _advance(self, now: float) -> float:
        run = self.active
        assert run is not None
        book = run.playbook
        if now - run.started_s > book.settings.total_timeout:
            self._escalate(
                now, book.kind, f"{book.name} exceeded {book.settings.total_timeout:g} s"
            )
            return 0.0
        if run.index >= len(book.steps):
            return self._await_resume(now, run)
        step = book.steps[run.index]
        ctx = self.ctx
        if run.step_started_s is None:
            run.step_started_s = now
            ctx.scratch = {}
            ctx.first = True
            if step.when is not None:
                try:
                    needed = step.when(ctx)
                except LabError:
                    needed = True
                if not needed:
                    self.audit.record("skip", f"{book.name}.{step.name}", "not needed")
                    self._next_step(run)
                    return 0.0
        elif now - run.step_started_s > step.timeout_s:
            return self._fail(now, run, f"{step.name} timed out after {step.timeout_s:g} s")
        try:
            result = step.action(ctx)
        except LabError as exc:  # e.g. the driver host restarting: try again until the timeout
            result = StepResult(StepStatus.WAIT, 1.0, f"lab error: {exc}")
        ctx.first = False
        if result.status is StepStatus.DONE:
            self.audit.record("step", f"{book.name}.{step.name}", result.note or "done")
            if ctx.finish_early:
                ctx.finish_early = False
                run.index = len(book.steps)
                run.step_started_s = None
            else:
                self._next_step(run)
            return 0.0
        if result.status is StepStatus.FAIL:
            return self._fail(now, run, f"{step.name}: {result.note}", retry=result.retry)
        if result.note and (run.scratch.get("noted") != result.note):
            run.scratch["noted"] = result.note
            self.audit.record("wait", f"{book.name}.{step.name}", result.note)
        run.next_at = self.clock.now() + result.wait_s
        return max(0.0, run.next_at - self.clock.now())

    def _next_step(self, run: Run) -> None:
        run.index += 1
        run.step_started_s = None

    def _await_resume(self, now: float, run: Run) -> float:
        book = run.playbook
        if run.resume_wait_since is None:
            run.resume_wait_since = now
        if book.resumed(self.health, now):
            self._complete(now, run)
            return 0.0
        if now - run.resume_wait_since > book.resume_timeout_s:
            failing = [
                c.describe(self.health) for c in book.resume if not c.holds(self.health, now)
            ]
            return self._fail(now, run, "resume condition not met: " + "; ".join(failing))
        return min(self.settings.health_period, 0.5)

    def _fail(self, now: float, run: Run, reason: str, retry: bool = True) -> float:
        book = run.playbook
        run.attempt += 1
        self._abort(run)
        if not retry:  # a limit or an exhausted search: another attempt cannot help
            self._escalate(now, book.kind, f"{book.name}: {reason} (gave up: not retried)")
            return 0.0
        if run.attempt > book.settings.max_retries:
            self._escalate(now, book.kind, f"{book.name}: {reason} (after {run.attempt} attempts)")
            return 0.0
        self.audit.record(
            "retry", book.name, f"{reason}; attempt {run.attempt + 1}", severity="MINOR"
        )
        run.index = 0
        run.step_started_s = None
        run.resume_wait_since = None
        run.next_at = now + self.settings.retry_delay
        return self.settings.retry_delay

    def _abort(self, run: Run) -> None:
        if run.playbook.abort is None:
            return
        try:
            run.playbook.abort(self.ctx)
        except LabError as exc:
            self.audit.record("abort_failed", run.playbook.name, str(exc), severity="MAJOR")

    def _complete(self, now: float, run: Run) -> None:
        book = run.playbook
        record = run.record
        if self.ctx.outcome is not None:
            record.kind = self.ctx.outcome
            self.ctx.outcome = None
        record.finished_s = now
        self._force_reacquire = self._force_reacquire or self.ctx.force_reacquire
        self.ctx.force_reacquire = False
        self.awaiting_lock.append(record)
        self.audit.record(
            "recovered",
            book.name,
            f"{record.kind}: resume condition met after {now - record.tripped_s:.1f} s",
        )
        self.active = None

    # ------------------------------------------------------------------ end of an episode

    def _end_episode(self, now: float) -> None:
        self.in_episode = False
        lock = self.lock
        half = lock.probe.half_width_hz
        if lock.state is LockState.HOLDOVER:
            paused = now - self._paused_at if math.isfinite(self._paused_at) else 0.0
            error = holdover_error_hz(self.settings, paused)
            if not self._force_reacquire and within_line(self.settings, paused, half):
                lock.resume(max_holdover_s=math.inf)
                self.audit.record(
                    "resume",
                    "clock_lock",
                    f"hold-over of {paused:.1f} s: predicted error {error:.2f} Hz within "
                    f"{self.settings.holdover_line_fraction:g} of the {half:.2f} Hz half-width; "
                    "no line search",
                )
            else:
                why = (
                    "the laser changed cavity mode"
                    if self._force_reacquire
                    else f"predicted hold-over error {error:.2f} Hz exceeds the line"
                )
                lock.reacquire(f"after recovery: {why}")
                self.audit.record("reacquire", "clock_lock", why)
        elif lock.state in (LockState.ACQUIRING, LockState.UNLOCKED):
            lock.reacquire("after recovery")
            self.audit.record("reacquire", "clock_lock", "the lock was not locked when it tripped")
        if self.hold_jobs is not None:
            self.hold_jobs(False, "recovered")
            self.audit.record("jobs", "release", "recovered")
        self._paused_at = math.nan
        self._stamp_recovered(now)

    def _stamp_recovered(self, now: float) -> None:
        if self.awaiting_lock and not self.in_episode and self.lock.state is LockState.LOCKED:
            for record in self.awaiting_lock:
                record.recovered_s = now
            self.awaiting_lock.clear()

    # ------------------------------------------------------------------ idle watch

    def _watch_idle(self, now: float) -> None:
        lock = self.lock
        if lock.state is LockState.UNLOCKED and self._lock_started():
            self._escalate(now, "unrecognised", "clock lock unlocked (line not found)")
            return
        if lock.state is LockState.HOLDOVER and self.held:
            self._lab_error_since = None  # paused for a borrower, not by a lab error
        elif lock.state is LockState.HOLDOVER:
            # a lab error paused the lock and no playbook tripped: try again after a grace
            if self._lab_error_since is None:
                self._lab_error_since = now
            elif now - self._lab_error_since >= self.settings.lab_error_grace:
                self.audit.record("resume", "clock_lock", "lab error cleared without a fault")
                lock.resume()
                self._lab_error_since = None
        else:
            self._lab_error_since = None
        covered = self._covered
        for name, signal in self.health.signals.items():
            if signal.severity >= Severity.MAJOR and name not in covered:
                since = self._unwatched_since.setdefault(name, now)
                if now - since > self.settings.unrecognised_after:
                    self._escalate(
                        now,
                        "unrecognised",
                        f"{name} {signal.severity.name} for {now - since:.0f} s "
                        f"({signal.reason}) and no playbook for it",
                    )
                    return
            else:
                self._unwatched_since.pop(name, None)

    def _lock_started(self) -> bool:
        return self.lock.updates > 0 or self.lock.acquisition_steps > 0

    # ------------------------------------------------------------------ safe state

    def _escalate(self, now: float, kind: str, reason: str) -> None:
        """Safe state: oven off, RF kept, lasers parked; an alert; wait for the operator."""
        run = self.active
        if run is not None:
            run.record.escalated = True
            run.record.reason = reason
            self._abort(run)
        else:
            record = self.uptime.fault_tripped(kind, kind, now, reason)
            record.escalated = True
        for name, tripped in self.queue.items():
            book = self.by_name[name]
            pending = self._pending_records.pop(name, None)
            record = pending or self.uptime.fault_tripped(book.kind, name, tripped, reason)
            record.escalated = True
        self.queue.clear()
        self.active = None
        s = self.settings
        safe = s.safe_state
        done: list[str] = []
        actions: list[tuple[str, str, float]] = []
        if safe.oven_off:
            actions.append(("oven off", f"{s.oven_supply}.ch{s.oven_channel}.output", False))
        if safe.park_lasers:
            actions.append(("photoionisation beam closed", f"{s.pi_shutter}.open", False))
        for what, parameter, value in actions:
            try:
                self.lab.set(parameter, value)
                done.append(what)
            except LabError as exc:
                done.append(f"{what} FAILED ({exc})")
        if safe.park_lasers:
            for aux in self.auxes.values():
                aux.stop()
            done.append("wavemeter locks parked at their piezo voltages")
        if safe.keep_rf:
            done.append("RF kept on")
        self.lock.stop(f"safe state: {reason}")
        self.safe = True
        self.in_episode = False
        self.escalations.append({"t_s": now, "kind": kind, "reason": reason})
        self.escalation_count += 1
        del self.escalations[:-KEEP_ESCALATIONS]
        self.audit.record(
            "escalate", kind, f"{reason}; safe state: {', '.join(done)}", severity="ALERT"
        )
        if self.hold_jobs is not None:
            self.hold_jobs(True, f"safe state: {reason}")

    # ------------------------------------------------------------------ figures

    def stuck(self, now: float) -> int:
        """Faults that neither recovered nor escalated within their playbook's total time."""
        count = 0
        for record in self.uptime.faults:
            if record.recovered_s is not None or record.escalated:
                continue
            book = self.by_name.get(record.playbook)
            bound = book.settings.total_timeout if book is not None else 600.0
            if now - record.tripped_s > bound + 600.0:  # + time for the lock to re-acquire
                count += 1
        return count

    def in_progress(self) -> int:
        return sum(1 for r in self.uptime.faults if r.recovered_s is None and not r.escalated)
