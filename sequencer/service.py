"""The sequencer service: the job queue on the bus, so scripts and the daemon can submit.

Serves target `sequencer` (see `SequencerService` for the methods). A worker thread takes the next
ready job (priority, then due time, then submission order; user jobs wait while the queue is held
for a recovery, clock interrogations do not) and runs it on the configured backend; the queue is
persisted after every change, so a restart loses nothing (a job cut off mid-run is queued again).
Programs are compiled when they are submitted, so a bad program is refused at once with its error
and never enters the queue. Job events are published on `evt.sequencer.<kind>`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import zmq

from ionpilot.bus.codec import BusError, ErrorCode, Request
from ionpilot.bus.pubsub import HeartbeatPublisher, Publisher
from ionpilot.bus.server import CommandServer
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.sequencer.backends import get_backend
from ionpilot.sequencer.errors import JobError, SequencerError
from ionpilot.sequencer.jobs import JOB_KINDS, JOB_STATES, Job, JobQueue
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.runner import compile_program, run_qasm
from ionpilot.sequencer.schedule import Schedule, validate_schedule
from ionpilot.sequencer.settings import DeviceSettings

log = logging.getLogger(__name__)

Execute = Callable[[Job], dict[str, Any]]
MAX_PROGRAM_CHARS = 200_000
MAX_SHOTS = 100_000
MAX_LIST = 1000
IDLE_WAIT_S = 1.0  # longest the worker sleeps without looking at due times


def _summary(job: Job) -> dict[str, Any]:
    """A job without its program and result (for `list`)."""
    return {
        "id": job.job_id,
        "kind": job.kind,
        "state": job.state,
        "submitter": job.submitter,
        "priority": job.priority,
        "shots": job.shots,
        "backend": job.backend,
        "due_s": job.due_s,
        "submitted_s": job.submitted_s,
        "started_s": job.started_s,
        "finished_s": job.finished_s,
        "error": job.error,
    }


class SequencerService:
    """Serves the job queue on target `sequencer`:

    * `call name=submit qasm=TEXT [shots priority due_s client backend if_held]` -> `{id, ahead,
      held, hold_reason, held_by, held_since_s, holds}`; `backend` (if given) must be the one this
      service runs; `if_held=refuse` refuses (`busy`, nothing queued) while user jobs are held;
      clock interrogations as `call name=submit kind=clock schedule=JSON-TEXT` (they run even
      while held);
    * `call name=cancel id=ID`; `call name=hold [reason]` holds user jobs until the same sender
      (`client`) calls `resume`; `call name=resume all=true` releases every hold;
    * `call name=compile qasm=TEXT` -> schedule and compile report (nothing runs);
    * `call name=simulate qasm=TEXT [shots ideal]` -> a result on the simulated chain, at once;
    * `get name=job id=ID [audit]` -> the job with its state, result or error (and with
      `audit=true` its audit records);
    * `list [limit kind state]` -> jobs (summaries; of one kind, in one state) and the latest
      audit records (of those kinds' jobs and of the queue itself);
    * `status` -> held or not (each hold: by whom, why, since when), queue counts, backend.
    """

    PROCESS = "sequencer"

    def __init__(
        self,
        queue: JobQueue,
        device: DeviceSettings,
        execute: Execute,
        bus: BusSettings,
        command_endpoint: str,
        *,
        backend: str = "trap",
        clock: Clock | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.queue = queue
        self.device = device
        self.backend = backend
        self._execute = execute
        self._bus = bus
        self._clock = clock or SystemClock()
        self._context = context or zmq.Context.instance()
        self._endpoint = command_endpoint
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.running_job: str | None = None
        self.server = CommandServer(self.PROCESS, bus, context=self._context, clock=self._clock)
        self.heartbeat = HeartbeatPublisher(
            bus, self.PROCESS, clock=self._clock, context=self._context
        )
        self.server.register(self.PROCESS, "call", self._call)
        self.server.register(self.PROCESS, "get", self._get)
        self.server.register(self.PROCESS, "list", self._list)
        self.server.register(self.PROCESS, "status", self._status)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    # --------------------------------------------------------------------------- lifecycle

    def start(self) -> SequencerService:
        self.server.bind(self._endpoint)
        self.server.start()
        self.heartbeat.start()
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="sequencer-jobs", daemon=True)
        self._worker.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a job in progress finishes first (a pulse program is not cut)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None
        self.heartbeat.stop()
        self.server.close()
        with self._cond:
            self.queue.checkpoint()

    def __enter__(self) -> SequencerService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ worker

    def _work(self) -> None:
        publisher = Publisher(self._bus, self.PROCESS, clock=self._clock, context=self._context)
        if self.queue.load_error is not None:  # the saved queue was unreadable and set aside
            log.warning("%s", self.queue.load_error)
            publisher.publish_event("queue_restore_failed", self.queue.load_error[:1000], "MAJOR")
        try:
            while not self._stop.is_set():
                with self._cond:
                    job = self.queue.next_job(self.PROCESS)
                    if job is None:
                        self._cond.wait(self._idle_wait())
                        continue
                    self.running_job = job.job_id
                publisher.publish_event("job_started", f"{job.kind} job {job.job_id}")
                result: dict[str, Any] | None = None
                error: str | None = None
                try:
                    result = self._execute(job)
                except SequencerError as exc:
                    error = str(exc)
                except Exception as exc:  # the job fails, the service goes on
                    log.exception("job %s failed", job.job_id)
                    error = f"{type(exc).__name__}: {exc}"
                with self._cond:
                    self.queue.finish(job.job_id, result=result, error=error, who=self.PROCESS)
                    self.running_job = None
                if error is None:
                    publisher.publish_event("job_done", f"{job.kind} job {job.job_id} done")
                else:
                    publisher.publish_event(
                        "job_failed", f"{job.kind} job {job.job_id}: {error}"[:1000], "MINOR"
                    )
        finally:
            publisher.close()

    def _idle_wait(self) -> float:
        """Seconds until the earliest queued job is due (capped), called with the lock held."""
        now = self.queue.clock()
        dues = [j.due_s - now for j in self.queue.jobs("queued")]
        future = [d for d in dues if d > 0]
        return max(0.01, min([IDLE_WAIT_S, *future]))

    # ---------------------------------------------------------------------------- handlers

    def _call(self, request: Request) -> Any:
        name = request.args.get("name")
        who = _who(request)
        try:
            if name == "submit":
                return self._submit(request.args, who)
            if name == "cancel":
                job_id = _text(request.args, "id")
                with self._cond:
                    self.queue.cancel(job_id, who)
                return {"id": job_id, "state": "cancelled"}
            if name == "hold":
                reason = str(request.args.get("reason", "") or "recovery")
                with self._cond:
                    self.queue.hold(who, reason)
                return {"held": True, "reason": reason}
            if name == "resume":
                with self._cond:
                    self.queue.resume(who, everyone=request.args.get("all") is True)
                    self._cond.notify_all()
                    return self.queue.hold_state()
            if name == "compile":
                return self._compile(_text(request.args, "qasm"))
            if name == "simulate":
                return self._simulate(request.args)
        except JobError as exc:
            raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None
        raise BusError(
            ErrorCode.UNKNOWN_METHOD,
            f"sequencer does not serve call {name!r}; calls: submit, cancel, hold, resume, "
            "compile, simulate",
        )

    def _compile(self, qasm: str) -> dict[str, Any]:
        """Compile for this device without running anything: the schedule and the report (what
        the console draws), or the program's error with line and column."""
        try:
            program = compile_program(parse_qasm(qasm, name="request"), self.device)
        except SequencerError as exc:
            raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None
        return {"schedule": program.schedule.to_json(), "report": program.report.to_json()}

    def _simulate(self, args: dict[str, Any]) -> dict[str, Any]:
        """Run on the simulated ion chain (never the trap, never queued): a quick look at what a
        program should give before it is submitted."""
        shots = _int(args, "shots", 1000)
        if not 1 <= shots <= MAX_SHOTS:
            raise BusError(ErrorCode.BAD_REQUEST, f"shots must be 1..{MAX_SHOTS}")
        backend = get_backend("sim", self.device, ideal=bool(args.get("ideal", False)))
        try:
            return run_qasm(_text(args, "qasm"), backend, self.device, shots=shots, name="request")
        except SequencerError as exc:
            raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None

    def _submit(self, args: dict[str, Any], who: str) -> dict[str, Any]:
        kind = args.get("kind", "user")
        shots = _int(args, "shots", 100)
        priority = _int(args, "priority", 0)
        due = args.get("due_s")
        if due is not None and (isinstance(due, bool) or not isinstance(due, int | float)):
            raise BusError(ErrorCode.BAD_REQUEST, "due_s must be a Unix time in seconds")
        if not 1 <= shots <= MAX_SHOTS:
            raise BusError(ErrorCode.BAD_REQUEST, f"shots must be 1..{MAX_SHOTS}")
        backend = args.get("backend", self.backend)
        if backend != self.backend:
            raise BusError(
                ErrorCode.BAD_REQUEST,
                f"this sequencer service runs jobs on the '{self.backend}' backend, not "
                f"{backend!r}",
            )
        if_held = args.get("if_held", "wait")
        if if_held not in ("wait", "refuse"):
            raise BusError(ErrorCode.BAD_REQUEST, "if_held must be 'wait' or 'refuse'")
        if kind == "user":
            program = _text(args, "qasm")
            try:
                compile_program(parse_qasm(program, name="job"), self.device)
            except SequencerError as exc:
                raise BusError(ErrorCode.BAD_REQUEST, f"program refused: {exc}") from None
        elif kind == "clock":
            program = _text(args, "schedule")
            try:
                validate_schedule(Schedule.loads(program), self.device)
            except (SequencerError, ValueError) as exc:
                raise BusError(ErrorCode.BAD_REQUEST, f"schedule refused: {exc}") from None
        else:
            raise BusError(ErrorCode.BAD_REQUEST, "kind must be 'user' or 'clock'")
        with self._cond:
            hold = self.queue.hold_state()
            if kind == "user" and if_held == "refuse" and hold["held"]:
                since = hold["held_since_s"]
                held_for = "" if since is None else f", for {self.queue.clock() - since:.0f} s"
                raise BusError(
                    ErrorCode.BUSY,
                    f"user jobs are held (by {hold['held_by'] or 'unknown'}{held_for}): "
                    f"{hold['hold_reason']}; nothing submitted",
                )
            job_id = self.queue.submit(
                program,
                submitter=who,
                shots=shots,
                priority=priority,
                due_s=None if due is None else float(due),
                kind=kind,
                backend=self.backend,
            )
            self._cond.notify_all()
            return {"id": job_id, "ahead": self.queue.ahead_of(job_id), **hold}

    def _get(self, request: Request) -> Any:
        if request.args.get("name") != "job":
            raise BusError(ErrorCode.BAD_REQUEST, "get serves name=job id=ID")
        job_id = _text(request.args, "id")
        with self._cond:
            try:
                job = self.queue.get(job_id)
            except JobError as exc:
                raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None
            out = _summary(job)
            out["program"] = job.program
            out["result"] = job.result
            if request.args.get("audit") is True:  # a scan of the whole trail: on request
                out["audit"] = [asdict(a) for a in self.queue.audit() if a.job_id == job_id]
        return out

    def _list(self, request: Request) -> Any:
        limit = _int(request.args, "limit", 100)
        limit = max(1, min(limit, MAX_LIST))
        kinds = _choice(request.args, "kind", JOB_KINDS)
        states = _choice(request.args, "state", JOB_STATES)
        with self._cond:
            known = {j.job_id: j.kind for j in self.queue.jobs()}
            jobs = [
                _summary(j) for j in self.queue.jobs() if j.kind in kinds and j.state in states
            ][-limit:]
            audit = [
                asdict(a)
                for a in self.queue.audit()
                # a forgotten (pruned) job's records only when every kind is asked for
                if not a.job_id or known.get(a.job_id, "") in kinds or kinds == JOB_KINDS
            ][-limit:]
            return {**self.queue.hold_state(), "jobs": jobs, "audit": audit}

    def _status(self, request: Request) -> Any:
        with self._cond:
            counts: dict[str, int] = {}
            for job in self.queue.jobs():
                counts[job.state] = counts.get(job.state, 0) + 1
            return {
                "process": self.PROCESS,
                "backend": self.backend,
                **self.queue.hold_state(),
                "running": self.running_job,
                "jobs": counts,
            }


def _who(request: Request) -> str:
    client = request.args.get("client")
    if isinstance(client, str) and client:
        return client[:128]
    return request.client or "anonymous"


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise BusError(ErrorCode.BAD_REQUEST, f"{key} (text) is required")
    if len(value) > MAX_PROGRAM_CHARS:
        raise BusError(ErrorCode.BAD_REQUEST, f"{key} longer than {MAX_PROGRAM_CHARS} characters")
    return value


def _int(args: dict[str, Any], key: str, default: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BusError(ErrorCode.BAD_REQUEST, f"{key} must be an integer")
    return value


def _choice(args: dict[str, Any], key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The values of `key` asked for (one name or a list of them); all of `allowed` if absent."""
    value = args.get(key)
    if value is None:
        return allowed
    chosen = [value] if isinstance(value, str) else value
    if not isinstance(chosen, list) or not chosen or any(c not in allowed for c in chosen):
        raise BusError(ErrorCode.BAD_REQUEST, f"{key} must be one or more of {', '.join(allowed)}")
    return tuple(chosen)
