"""The sequencer service: the job queue on the bus, so scripts and the daemon can submit.

Serves target `sequencer` (see `SequencerService` for the methods). A worker thread runs the jobs
on the configured backend, one at a time: every pulse on the trap, the servo's clock
interrogations as much as users' circuits, goes through here. Programs are compiled (schedules
validated) when they are submitted, so a bad one is refused at once and never enters the queue.

Who runs next (`ionpilot.sequencer.interleave.ClockShare`): clock jobs at their own priority,
keeping at least `min_duty` of the controller whenever user jobs wait (the servo's minimum
interrogation rate), user jobs filling the rest; a long user job is played in calls of at most
`max_user_slice_s`, with the clock's jobs run between them. User jobs wait while the queue is held
(the daemon holds it while the clock lock is not `locked` and during recoveries); clock jobs
never do. Within a kind: priority, then due time, then submission order.

The daemon's interrogations use `call name=run_clock`, answered when the job has run: the
command server defers the reply (a future the worker completes), so other callers are served
meanwhile and no thread waits on a poll. A clock job that has not started by the caller's
deadline (its request's `ttl_s`) is dropped unplayed.

Who may submit clock jobs: they run even while user jobs are held (a recovery, a lock not
`locked`), so only the clock servo (the principal `daemon`) and the current borrower of the clock
laser or the trap may submit them. The borrower is who the daemon says it lent them to
(`call name=lease`, the daemon's alone): its authenticated identity on the bus plus the secret
lease token the daemon gave it (`lend_laser`'s reply), which its clock jobs carry (`lease=`);
they pass only the lock's own hold (`daemon.lock`), never a recovery's (`JobQueue.ready`).
Anyone else's schedule is a user job (`kind=user schedule=...`): queued, held and sliced like a
program. Identities are the bus's authenticated ones (`Request.user`, CURVE); a lab file that
turns CURVE off has none, and the declared `client` name stands in for them (forgeable: say
so in the lab file). A declared `client` that names another principal of the lab (`daemon`,
`daemon.lock`, ...) is refused, so no one holds or releases jobs in the daemon's name. The clock
lock's state in results is the servo's word alone (`lock_state` from anyone else is refused).

Retention: user jobs are persisted after every change (a restart loses nothing; a job cut off
mid-run is queued again), their audit records kept up to the queue's cap (100k). Clock jobs,
several a second, are kept in memory only (the last `max_finished_clock`, 100, for `list
kind=clock`; a restart drops the ones in flight, whose callers time out and ask again), publish no
per-job events, and are audited in aggregate: one `clock_jobs` record per 1000 finished or per
10 minutes (counts, controller time, the last error). User job events are published on
`evt.sequencer.<kind>`. Each user job's result carries the clock lock's state (at its start and
its end), the laser's fractional offset (as the daemon's clock jobs last reported them) and the
lab's calibration record (`CalibrationStore.latest()`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from ionpilot.bus.codec import BusError, ErrorCode, Request
from ionpilot.bus.pubsub import HeartbeatPublisher, Publisher, Subscriber
from ionpilot.bus.server import CommandServer
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.sequencer.backends import get_backend
from ionpilot.sequencer.errors import JobError, SequencerError
from ionpilot.sequencer.interleave import ClockShare
from ionpilot.sequencer.jobs import JOB_KINDS, JOB_STATES, Job, JobQueue
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.runner import compile_program, run_qasm
from ionpilot.sequencer.schedule import Schedule, validate_schedule
from ionpilot.sequencer.settings import DeviceSettings

log = logging.getLogger(__name__)

Execute = Callable[[Job], dict[str, Any]]
Calibrations = Callable[[], dict[str, Any]]  # the lab's calibration record, as JSON
MAX_PROGRAM_CHARS = 200_000
MAX_SHOTS = 100_000
MAX_LIST = 1000
IDLE_WAIT_S = 1.0  # longest the worker sleeps without looking at due times
LOCK_REPORT_STALE_S = 30.0  # no clock job for this long: the lock state is unknown here
RATE_WINDOW_S = 60.0  # the clock-job rate in `status` is over this window
LOCK_STATES = ("unlocked", "acquiring", "locked", "holdover", "unknown")
CLOCK_SERVO = "daemon"  # the principal whose clock jobs are the servo's interrogations
LENT = ("clock", "trap")  # what the daemon lends, whose borrower may submit clock jobs
MAX_LEASE_S = 3600.0  # the daemon's longest lease; a lease here ends by itself after it
OPERATOR = "operator"  # the shared identity of people and scripts: never a reserved name
STALE_HOLD_S = 60.0  # a hold whose holder's process has not beaten for this long is stale
RECV_TIMEOUT_S = 0.2  # how often the holder watch looks at its stop flag


@dataclass(frozen=True)
class ClockLease:
    """The clock laser or the trap lent by the daemon: to whom (authenticated identity and the
    name it gave), with which secret token, until when (this service's clock)."""

    laser: str
    holder: str
    owner: str
    token: str
    until: float


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
      held, hold_reason, held_by, held_since_s, holds, stale_holds}`; `backend` (if given) must
      be the one this service runs; `if_held=refuse` refuses (`busy`, nothing queued) while user
      jobs are held; a user's own pulse schedule as `schedule=JSON-TEXT` instead of `qasm`;
      clock interrogations as `call name=submit kind=clock schedule=JSON-TEXT [lease=TOKEN]`
      (they run even while held: the daemon's, or its borrower's with the lease token);
    * `call name=lease laser=clock|trap holder owner token lease_s` / `lease laser=L end=true`:
      the daemon says who borrows the clock laser or the trap (the daemon's alone);
    * `call name=run_clock schedule=JSON-TEXT shots=N [lock_state fractional_offset]` -> the
      clock job's raw controller reply (`windows`, per-shot `counts`) and its `id`, once it has
      run (the daemon's interrogations; the reply is deferred, nobody else waits for it);
    * `call name=cancel id=ID`; `call name=hold [reason]` holds user jobs until the same sender
      (`client`) calls `resume`; `call name=resume all=true` releases every hold;
    * `call name=compile qasm=TEXT` -> schedule and compile report (nothing runs);
    * `call name=simulate qasm=TEXT [shots ideal]` -> a result on the simulated chain, at once;
    * `get name=job id=ID [audit]` -> the job with its state, result or error (and with
      `audit=true` its audit records);
    * `list [limit kind state]` -> jobs (summaries; of one kind, in one state) and the latest
      audit records (of those kinds' jobs and of the queue itself);
    * `status` -> held or not (each hold: by whom, why, since when), queue counts, backend,
      and `clock`: the share policy, the lock as last reported, clock jobs per second.
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
        share: ClockShare | None = None,
        calibrations: Calibrations | None = None,
        clock_servo: str = CLOCK_SERVO,
        stale_hold_s: float = STALE_HOLD_S,
    ) -> None:
        """`clock_servo`: the principal whose clock jobs need no lease (the daemon). A hold of
        its (`daemon`, `daemon.lock`) whose heartbeat (`hb.daemon`) has been silent for
        `stale_hold_s` is marked stale in every hold state (not released: with the servo gone
        the laser is off the ions' line, and a job run then would measure nothing)."""
        if not stale_hold_s > 0:
            raise ValueError(f"stale_hold_s must be positive, not {stale_hold_s!r}")
        self.stale_hold_s = stale_hold_s
        self._holder_watch: HolderWatch | None = None
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
        self.share = share or ClockShare()
        self._calibrations = calibrations
        self.clock_servo = clock_servo
        # with CURVE on, the bus authenticates every caller (`Request.user`); off, it cannot
        self.authenticated = bool(bus.security.curve)
        # declared client names only their own principal may use (`daemon`, `daemon.lock`)
        self._reserved = {
            n for n in (*bus.security.clients, clock_servo, self.PROCESS) if n != OPERATOR
        }
        self._leases: dict[str, ClockLease] = {}  # laser -> its lease, while lent
        self._waiters: dict[str, concurrent.futures.Future[Any]] = {}  # clock job -> its reply
        self._generation = 0  # bumped on every change a waiting worker must look at
        self._last_clock_end = -math.inf
        self._slice_start = 0.0
        self._waited_from: float | None = None  # the controller idle for an owed clock since
        self._clock_ends: deque[float] = deque(maxlen=4096)  # for the clock-job rate
        self._lock_report: dict[str, Any] = {}  # the daemon's last word on the lock
        self._lock_report_at = -math.inf
        self._publisher: Publisher | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, bus.handler_threads), thread_name_prefix="sequencer-calls"
        )
        self.server = CommandServer(self.PROCESS, bus, context=self._context, clock=self._clock)
        self.heartbeat = HeartbeatPublisher(
            bus, self.PROCESS, clock=self._clock, context=self._context
        )
        self.server.register(self.PROCESS, "call", self._call_deferred, deferred=True)
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
        self._holder_watch = HolderWatch(self._bus, self.clock_servo, self._clock, self._context)
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="sequencer-jobs", daemon=True)
        self._worker.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a job in progress finishes first (a pulse program is not cut)."""
        self._stop.set()
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None
        self.heartbeat.stop()
        if self._holder_watch is not None:
            self._holder_watch.stop()
            self._holder_watch = None
        self.server.close()
        with self._cond:
            waiters, self._waiters = list(self._waiters.values()), {}
            self.queue.checkpoint()
        for waiter in waiters:
            _settle(waiter, error=BusError(ErrorCode.TIMEOUT, "the sequencer service stopped"))
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> SequencerService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ worker

    def _work(self) -> None:
        publisher = Publisher(self._bus, self.PROCESS, clock=self._clock, context=self._context)
        self._publisher = publisher
        if self.queue.load_error is not None:  # the saved queue was unreadable and set aside
            log.warning("%s", self.queue.load_error)
            publisher.publish_event("queue_restore_failed", self.queue.load_error[:1000], "MAJOR")
        try:
            while not self._stop.is_set():
                generation = self._generation
                wait = self.step()
                if wait > 0:
                    self._nap(wait, generation)
        finally:
            self._publisher = None
            publisher.close()

    def step(self) -> float:
        """Run the job the policy picks (0 then), or return how long to wait for one."""
        with self._cond:
            job, wait = self._pick(user_running=False)
        if job is None:
            return wait
        if job.kind == "clock":
            self._run_clock(job)
        else:
            self._run_user(job)
        return 0.0

    def between_slices(self) -> None:
        """Called by the backend between two controller calls of a user job: the clock's jobs
        run here when the policy says the clock is owed time (waiting up to its grace for the
        servo's next one)."""
        now = self._clock.now()
        self.share.ran("user", now - self._slice_start, users_waiting=True)
        while not self._stop.is_set():
            generation = self._generation
            with self._cond:
                job, wait = self._pick(user_running=True)
            if job is not None:
                self._run_clock(job)
            elif wait > 0:
                self._nap(wait, generation)
            else:
                break
        self._slice_start = self._clock.now()

    def _nap(self, seconds: float, generation: int) -> None:
        """Wait up to `seconds` for a change (a submission, a resume), unless one came since
        `generation` was read (so a notification between the look and the wait is not lost)."""
        with self._cond:
            if generation == self._generation and not self._stop.is_set():
                self._cond.wait(seconds)

    def _pick(self, *, user_running: bool) -> tuple[Job | None, float]:
        """(the job to start, 0) or (None, seconds to wait); called with the lock held. With a
        user job running (between its slices) only a clock job can start."""
        self._drop_abandoned()
        clock_ready = bool(self.queue.ready("clock"))
        user_ready = user_running or bool(self.queue.ready("user"))
        now = self._clock.now()
        if self._waited_from is not None:  # idle for the servo while users waited: its time
            self.share.ran("wait", now - self._waited_from, users_waiting=True)
        since = now - self._last_clock_end
        choice, wait = self.share.choose(clock_ready, user_ready, since)
        self._waited_from = now if choice == "wait" else None
        if choice == "clock":
            return self.queue.next_job(self.PROCESS, kind="clock"), 0.0
        if choice == "user" and not user_running:
            return self.queue.next_job(self.PROCESS, kind="user"), 0.0
        if choice == "wait":
            return None, wait
        return None, 0.0 if user_running else self._idle_wait()

    def _drop_abandoned(self) -> None:
        """Cancel queued clock jobs whose caller stopped waiting (the server cancelled its
        reply at the request's deadline): nobody would read what they measure."""
        for job_id, waiter in list(self._waiters.items()):
            try:
                state = self.queue.get(job_id).state
            except JobError:  # forgotten already
                state = "cancelled"
            if waiter.cancelled():
                del self._waiters[job_id]
                if state == "queued":
                    self.queue.cancel(job_id, self.PROCESS)
            elif state == "cancelled":  # by someone else (`jobs cancel`): its caller is told
                del self._waiters[job_id]
                _settle(
                    waiter, error=BusError(ErrorCode.BAD_REQUEST, f"clock job {job_id} cancelled")
                )

    def _run_clock(self, job: Job) -> None:
        with self._cond:
            waiter = self._waiters.pop(job.job_id, None)
            around = self.running_job  # a user job between two of its slices, or None
            self.running_job = job.job_id
        result: dict[str, Any] | None = None
        error: str | None = "the caller stopped waiting before it started; not played"
        if waiter is None or waiter.set_running_or_notify_cancel():
            result, error = self._execute_guarded(job)
        with self._cond:
            started = job.started_s if job.started_s is not None else self.queue.clock()
            ran_s = self.queue.clock() - started
            self.queue.finish(job.job_id, result=result, error=error, who=self.PROCESS)
            self.running_job = around
            self.share.ran("clock", ran_s, users_waiting=bool(self.queue.ready("user")))
            self._last_clock_end = self._clock.now()
            self._clock_ends.append(self._last_clock_end)
        if waiter is not None:
            if error is None and result is not None:
                _settle(waiter, value={**result, "id": job.job_id})
            else:
                _settle(waiter, error=BusError(ErrorCode.INSTRUMENT_ERROR, error or "no result"))

    def _run_user(self, job: Job) -> None:
        with self._cond:
            self.running_job = job.job_id
        lock_at_start = self.lock_report()["state"]
        self._publish("job_started", f"{job.kind} job {job.job_id}")
        self._slice_start = self._clock.now()
        result, error = self._execute_guarded(job)
        self.share.ran("user", self._clock.now() - self._slice_start, users_waiting=True)
        if result is not None:
            result["lock"] = {"state_at_start": lock_at_start, **self.lock_report()}
            result["calibration"] = self._calibration()
        with self._cond:
            self.queue.finish(job.job_id, result=result, error=error, who=self.PROCESS)
            self.running_job = None
        if error is None:
            self._publish("job_done", f"{job.kind} job {job.job_id} done")
        else:
            self._publish("job_failed", f"{job.kind} job {job.job_id}: {error}"[:1000], "MINOR")

    def _execute_guarded(self, job: Job) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return self._execute(job), None
        except SequencerError as exc:
            return None, str(exc)
        except Exception as exc:  # the job fails, the service goes on
            log.exception("job %s failed", job.job_id)
            return None, f"{type(exc).__name__}: {exc}"

    def _publish(self, kind: str, message: str, severity: str = "INFO") -> None:
        if self._publisher is not None:
            self._publisher.publish_event(kind, message, severity)

    def _calibration(self) -> dict[str, Any]:
        """The lab's calibration record as it stands ({} without one, or if unreadable)."""
        if self._calibrations is None:
            return {}
        try:
            return self._calibrations()
        except (OSError, ValueError) as exc:
            log.warning("calibration record unreadable: %s", exc)
            return {}

    def lock_report(self) -> dict[str, Any]:
        """The clock lock as the daemon's clock jobs last reported it; `unknown` if none came
        for `LOCK_REPORT_STALE_S` (no daemon, or not interrogating)."""
        age = self._clock.now() - self._lock_report_at
        report = dict(self._lock_report)
        if not math.isfinite(age) or age > LOCK_REPORT_STALE_S:
            report["state"] = "unknown"
        report.setdefault("state", "unknown")
        report.setdefault("fractional_offset", None)
        report["age_s"] = age if math.isfinite(age) else None
        return report

    def clock_rate_hz(self) -> float:
        """Clock jobs finished per second over the last `RATE_WINDOW_S`."""
        now = self._clock.now()
        with self._cond:
            recent = sum(1 for t in self._clock_ends if now - t <= RATE_WINDOW_S)
        return recent / RATE_WINDOW_S

    def _idle_wait(self) -> float:
        """Seconds until the earliest queued job is due (capped), called with the lock held."""
        now = self.queue.clock()
        dues = [j.due_s - now for j in self.queue.jobs("queued")]
        future = [d for d in dues if d > 0]
        return max(0.01, min([IDLE_WAIT_S, *future]))

    # ---------------------------------------------------------------------------- handlers

    def _call_deferred(self, request: Request) -> concurrent.futures.Future[Any]:
        """In the command server's socket thread: hand everything to a pool thread. A
        `run_clock` request's reply is a future the worker completes once the job has run."""
        if request.args.get("name") == "run_clock":
            waiter: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._pool.submit(self._run_clock_request, request, waiter)
            return waiter
        return self._pool.submit(self._call, request)

    def call_in_process(self, args: dict[str, Any], client: str) -> concurrent.futures.Future[Any]:
        """`call` without the bus, in the caller's thread (the harness's daemon on virtual time,
        where no pool thread may race the worker): the same handlers; the reply as a future,
        which a `run_clock` completes once its job has run."""
        # an in-process caller is this process's own code: its name is its identity
        user = client.partition(".")[0]
        request = Request(0, "call", self.PROCESS, dict(args), client=client, user=user)
        if args.get("name") == "run_clock":
            waiter: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._run_clock_request(request, waiter)
            return waiter
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            done.set_result(self._call(request))
        except BusError as exc:
            done.set_exception(exc)
        return done

    def _run_clock_request(self, request: Request, waiter: concurrent.futures.Future[Any]) -> None:
        try:
            self._may_submit_clock(request)
            self._lock_report_from(request)
            args = {k: v for k, v in request.args.items() if k != "name"}
            self._submit({**args, "kind": "clock"}, self._who(request), waiter=waiter)
        except BusError as exc:
            _settle(waiter, error=exc)
        except Exception as exc:  # a bug here must still answer the caller
            log.exception("run_clock failed")
            _settle(waiter, error=BusError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))

    def _lock_report_from(self, request: Request) -> None:
        """Keep what `request` says about the lock: the clock servo's word only, since every
        user result carries it (refused from anyone else, nothing kept)."""
        if "lock_state" in request.args and self.identity(request) != self.clock_servo:
            raise BusError(
                ErrorCode.FORBIDDEN,
                f"lock_state is reported by the clock servo ({self.clock_servo!r}) alone, "
                f"not by {self.identity(request)!r}",
            )
        self._note_lock(request.args)

    def _note_lock(self, args: dict[str, Any]) -> None:
        """Keep what a clock job says about the lock (state, fractional offset) for results."""
        state = args.get("lock_state")
        if state is None:
            return
        if state not in LOCK_STATES:
            raise BusError(ErrorCode.BAD_REQUEST, f"lock_state must be one of {LOCK_STATES}")
        # without a new offset (a hold or its release), the last interrogation's stands
        offset = args.get("fractional_offset", self._lock_report.get("fractional_offset"))
        if offset is not None and (
            isinstance(offset, bool)
            or not isinstance(offset, int | float)
            or not math.isfinite(offset)
        ):
            raise BusError(ErrorCode.BAD_REQUEST, "fractional_offset must be a finite number")
        with self._cond:
            self._lock_report = {
                "state": state,
                "fractional_offset": None if offset is None else float(offset),
                "reported_wall_ns": self._clock.wall_ns(),
            }
            self._lock_report_at = self._clock.now()

    # ----------------------------------------------------------------- who may do what

    def identity(self, request: Request) -> str:
        """Who sent `request`: its authenticated identity on a secured bus; on a bus without
        CURVE (the lab file turned it off), the name it declares, which nothing checks."""
        if request.user:
            return request.user
        if self.authenticated:
            return "anonymous"  # a secured server answers only authenticated users
        return _declared(request).partition(".")[0]  # `daemon.lock` is the daemon's

    def _who(self, request: Request) -> str:
        """The name a request acts under (holder of a hold, submitter of a job): the `client`
        it declares, unless that names another principal of the lab (`daemon`, `daemon.lock`):
        nobody holds or releases jobs in the daemon's name but the daemon."""
        declared = _declared(request)
        me = self.identity(request)
        owner = declared.partition(".")[0]
        if owner in self._reserved and owner != me:
            raise BusError(
                ErrorCode.FORBIDDEN,
                f"client name {declared!r} is {owner!r}'s; you are {me!r}: name yourself otherwise",
            )
        return declared

    def _may_submit_clock(self, request: Request) -> None:
        """Clock jobs run while user jobs are held: the clock servo's, or the current
        borrower's of the clock laser or the trap (its identity and its lease token)."""
        me = self.identity(request)
        if me == self.clock_servo:
            return
        token = request.args.get("lease")
        with self._cond:
            self._drop_ended_leases()
            for lease in self._leases.values():
                # without CURVE no identity is checked: the token alone tells the borrower
                mine = lease.holder == me or not self.authenticated
                if mine and isinstance(token, str) and _same(token, lease.token):
                    return
            lent = [
                f"the {lease.laser} is lent to {lease.owner!r} ({lease.holder}) for another "
                f"{lease.until - self._clock.now():.0f} s"
                for lease in self._leases.values()
            ]
        why = "a lease token that is not the current one" if token is not None else "no lease"
        raise BusError(
            ErrorCode.FORBIDDEN,
            "clock jobs (kind=clock, run_clock) run even while user jobs are held, so only the "
            f"clock servo ({self.clock_servo!r}) and the current borrower of the clock laser or "
            "the trap (the lease token of the daemon's lend_laser, as `lease`) may submit them; "
            f"{me!r} sent {why}"
            + (f" ({'; '.join(lent)})" if lent else "")
            + ". Submit the schedule as a user job (kind=user schedule=...) instead",
        )

    def _may_cancel(self, job: Job, request: Request) -> None:
        """A clock job submitted in a principal's name (the daemon's interrogations) is that
        principal's to cancel: a script cancelling each as it comes would starve the lock."""
        owner = job.submitter.partition(".")[0]
        me = self.identity(request)
        if job.kind == "clock" and owner in self._reserved and owner != me:
            raise BusError(
                ErrorCode.FORBIDDEN,
                f"clock job {job.job_id} is {owner!r}'s (its interrogation); {me!r} may not "
                "cancel it",
            )

    def _drop_ended_leases(self) -> None:
        now = self._clock.now()
        for laser in [k for k, lease in self._leases.items() if lease.until <= now]:
            del self._leases[laser]

    def _lease(self, request: Request) -> dict[str, Any]:
        """`call name=lease laser=L holder=ID owner=TEXT token=TEXT lease_s=S` (the daemon's
        alone: it has lent laser L to `holder`), or `lease laser=L end=true` (taken back)."""
        me = self.identity(request)
        if me != self.clock_servo:
            raise BusError(
                ErrorCode.FORBIDDEN,
                f"leases are the clock servo's ({self.clock_servo!r}) to give, not {me!r}'s",
            )
        args = request.args
        laser = args.get("laser")
        if laser not in LENT:
            raise BusError(ErrorCode.BAD_REQUEST, f"laser must be one of {', '.join(LENT)}")
        if args.get("end") is True:
            with self._cond:
                self._leases.pop(str(laser), None)
            return {"laser": laser, "lent": False}
        fields = {key: args.get(key) for key in ("holder", "owner", "token")}
        for key, value in fields.items():
            if not isinstance(value, str) or not value or len(value) > 128:
                raise BusError(
                    ErrorCode.BAD_REQUEST, f"{key} (text, 1..128 characters) is required"
                )
        lease_s = args.get("lease_s")
        if (
            isinstance(lease_s, bool)
            or not isinstance(lease_s, int | float)
            or not 0 < lease_s <= MAX_LEASE_S
        ):
            raise BusError(
                ErrorCode.BAD_REQUEST,
                f"lease_s must be a number of seconds in (0, {MAX_LEASE_S:g}]",
            )
        lease = ClockLease(
            str(laser),
            str(fields["holder"]),
            str(fields["owner"]),
            str(fields["token"]),
            self._clock.now() + float(lease_s),
        )
        with self._cond:
            self._leases[lease.laser] = lease
        return {"laser": laser, "lent": True, "holder": lease.holder}

    def hold_state(self) -> dict[str, Any]:
        """The queue's hold state; each hold of the clock servo's says how long its process
        has been silent (`holder_silent_s`) and whether that makes it `stale`, and
        `stale_holds` names those (`jobs resume --force` releases them)."""
        state = self.queue.hold_state()
        watch = self._holder_watch
        stale: list[str] = []
        for hold in state["holds"]:
            process = str(hold["by"]).partition(".")[0]
            silent = None if watch is None else watch.silent_s(process)
            if silent is None:
                continue
            hold["holder_silent_s"] = silent
            hold["stale"] = silent >= self.stale_hold_s
            if hold["stale"]:
                stale.append(hold["by"])
        state["stale_holds"] = stale
        state["stale_hold_s"] = self.stale_hold_s
        return state

    def leases(self) -> dict[str, dict[str, Any]]:
        """Who holds what, for `status` (never the token)."""
        with self._cond:
            self._drop_ended_leases()
            now = self._clock.now()
            return {
                k: {"owner": v.owner, "holder": v.holder, "ends_in_s": v.until - now}
                for k, v in self._leases.items()
            }

    # -------------------------------------------------------------------------- calls

    def _call(self, request: Request) -> Any:
        name = request.args.get("name")
        if name == "lease":
            return self._lease(request)
        who = self._who(request)
        try:
            if name == "submit":
                if request.args.get("kind") == "clock":
                    self._may_submit_clock(request)
                return self._submit(request.args, who)
            if name == "cancel":
                job_id = _text(request.args, "id")
                with self._cond:
                    self._may_cancel(self.queue.get(job_id), request)
                    self.queue.cancel(job_id, who)
                return {"id": job_id, "state": "cancelled"}
            if name in ("hold", "resume"):
                # the daemon's lock hold says the lock state with it: a job released when the
                # lock is back names `locked`, not the state of the last clock job before
                self._lock_report_from(request)
            if name == "hold":
                reason = str(request.args.get("reason", "") or "recovery")
                with self._cond:
                    self.queue.hold(who, reason)
                return {"held": True, "reason": reason}
            if name == "resume":
                with self._cond:
                    self.queue.resume(who, everyone=request.args.get("all") is True)
                    self._generation += 1
                    self._cond.notify_all()
                    return self.hold_state()
            if name == "compile":
                return self._compile(_text(request.args, "qasm"))
            if name == "simulate":
                return self._simulate(request.args)
        except JobError as exc:
            raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None
        raise BusError(
            ErrorCode.UNKNOWN_METHOD,
            f"sequencer does not serve call {name!r}; calls: submit, run_clock, cancel, hold, "
            "resume, compile, simulate, lease",
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

    def _submit(
        self,
        args: dict[str, Any],
        who: str,
        waiter: concurrent.futures.Future[Any] | None = None,
    ) -> dict[str, Any]:
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
        program_format = "schedule" if kind == "clock" or "schedule" in args else "qasm"
        if kind not in ("user", "clock"):
            raise BusError(ErrorCode.BAD_REQUEST, "kind must be 'user' or 'clock'")
        if kind == "user" and "schedule" in args and "qasm" in args:
            raise BusError(ErrorCode.BAD_REQUEST, "a user job is a qasm program or a schedule")
        if program_format == "qasm":
            program = _text(args, "qasm")
            try:
                compile_program(parse_qasm(program, name="job"), self.device)
            except SequencerError as exc:
                raise BusError(ErrorCode.BAD_REQUEST, f"program refused: {exc}") from None
        else:
            program = _text(args, "schedule")
            try:
                schedule = Schedule.loads(program)
                validate_schedule(schedule, self.device)
            except (SequencerError, ValueError, TypeError, KeyError) as exc:
                raise BusError(ErrorCode.BAD_REQUEST, f"schedule refused: {exc}") from None
            if kind == "user":  # played in one controller call: no longer than a user slice
                played_s = shots * schedule.duration_mu * schedule.time_unit_s
                if played_s > self.share.max_user_slice_s:
                    raise BusError(
                        ErrorCode.BAD_REQUEST,
                        f"a user schedule plays in one call: {shots} shots x "
                        f"{schedule.duration_mu * schedule.time_unit_s:g} s = {played_s:g} s, at "
                        f"most {self.share.max_user_slice_s:g} s; submit fewer shots per job",
                    )
        with self._cond:
            hold = self.hold_state()
            if kind == "user" and if_held == "refuse" and hold["held"]:
                since = hold["held_since_s"]
                held_for = "" if since is None else f", for {self.queue.clock() - since:.0f} s"
                raise BusError(
                    ErrorCode.BUSY,
                    f"user jobs are held (by {hold['held_by'] or 'unknown'}{held_for}): "
                    f"{hold['hold_reason']}; nothing submitted",
                )
            try:
                job_id = self.queue.submit(
                    program,
                    submitter=who,
                    shots=shots,
                    priority=priority,
                    due_s=None if due is None else float(due),
                    kind=kind,
                    backend=self.backend,
                    program_format=program_format,
                )
            except JobError as exc:
                raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None
            if waiter is not None:
                self._waiters[job_id] = waiter
            self._generation += 1
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
            return {**self.hold_state(), "jobs": jobs, "audit": audit}

    def _status(self, request: Request) -> Any:
        with self._cond:
            counts: dict[str, int] = {}
            for job in self.queue.jobs():
                counts[job.state] = counts.get(job.state, 0) + 1
            share = self.share
            clock = {
                "min_duty": share.min_duty,
                "max_user_slice_s": share.max_user_slice_s,
                "grace_s": share.grace_s,
                "credit_s": share.credit_s,
                "lock": self.lock_report(),
            }
        clock["jobs_per_s"] = self.clock_rate_hz()
        return {
            "process": self.PROCESS,
            "backend": self.backend,
            **self.hold_state(),
            "running": self.running_job,
            "jobs": counts,
            "clock": clock,
            "leases": self.leases(),
        }


class HolderWatch:
    """The heartbeat (`hb.<process>`) of the process that holds jobs, from its own thread and
    socket: how long it has been silent (since this watch started, if it never beat)."""

    def __init__(
        self,
        bus: BusSettings,
        process: str,
        clock: Clock,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.process = process
        self._clock = clock
        self._started = clock.now()
        self._sub = Subscriber(bus, prefixes=[f"hb.{process}"], clock=clock, context=context)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{process}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sub.recv(timeout=RECV_TIMEOUT_S)  # the subscriber beats its liveness table

    def silent_s(self, process: str) -> float | None:
        """Seconds since `process` last beat (None: not the process watched)."""
        if process != self.process:
            return None
        since_start = self._clock.now() - self._started
        return min(self._sub.liveness.age(process), since_start)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sub.close()


def _settle(
    future: concurrent.futures.Future[Any],
    value: Any = None,
    error: BaseException | None = None,
) -> None:
    """Complete a caller's reply unless it is done already (cancelled at its deadline)."""
    if future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile: the server has answered `timeout`


def _declared(request: Request) -> str:
    """The name a request gives itself: its `client` argument, else its envelope's client."""
    client = request.args.get("client")
    if isinstance(client, str) and client:
        return client[:128]
    return request.client or "anonymous"


def _same(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


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
