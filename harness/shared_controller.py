"""The clock and user jobs on one pulse controller, on virtual time, with no bus.

The daemon (its own assembly, the World in process as its lab) asks for its interrogations as
clock jobs through the sequencer service's queue, as it does live (`QueuedClockShots`, the
`run_clock` call, each run carrying the lock's state and fractional offset); the service's worker
plays them, and the users' jobs, on the World's pulse controller through the trap backend (its
translation, its slices of at most `max_user_slice_s`, its decoding), its `ClockShare` deciding
who runs next with the clock's minimum duty from the lock settings (`clock_duty`), as the
`sequencer` process wires it. The daemon's lock hold and recovery hold reach the queue through
the service's own `call` handler.

Live these are two processes, each with its threads. Here the daemon's lock thread and the
service's worker are two threads that take turns on the World's virtual clock (`Turns`): only
one runs at a time; the servo's own computing takes no virtual time; the worker gives the servo
its turn when the clock job it waits for has run or its nap is over, looking between two jobs,
between two controller calls of a user job and in its own waits. So a run is deterministic for
a seed, and what it measures is the real policy's interleaving of the real servo's requests.

With `QueuedWorldLab` the fluorescence counts are clock jobs too, as live. What differs from
live: the clock AOM set-point the lock parks between its probes is written to the World's DDS
(WorldLab), which the live `BusLab` only remembers; other readings (wavemeter, comb, the chain's
per-ion count, the micromotion probe) are the World's at once, as the driver hosts' would be.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import ManualClock
from ionpilot.harness.lab import InProcessPulser, WorldLab, world_clock
from ionpilot.harness.virtual import StalledLoop
from ionpilot.sequencer.errors import SequencerError
from ionpilot.sequencer.interleave import ClockShare
from ionpilot.sequencer.jobs import Job, JobQueue
from ionpilot.sequencer.runner import execute_job
from ionpilot.sequencer.service import Calibrations, SequencerService
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.trap import TrapBackend
from ionpilot.servo.clock_jobs import SEQUENCER, QueuedClockShots
from ionpilot.servo.daemon import Daemon, lock_hold_call
from ionpilot.servo.interrogation import clock_duty
from ionpilot.servo.seams import LabError
from ionpilot.servo.settings import ClockLockSettings, PulseCalibration
from ionpilot.sim.instruments.ionpilot_pulser import RequestError

HANDOVER_TIMEOUT_S = 60.0  # real seconds: a turn not handed back by then is a deadlock (a bug)
STALL_LOOPS = 100_000  # worker passes in a row without virtual time passing


class LockThreadFailed(RuntimeError):
    """The daemon's lock thread raised; the cause is chained."""


class _Stop(BaseException):
    """Ends the lock thread at its next turn (not an Exception: the servo catches those)."""


class Turns:
    """Two threads on one virtual clock, one at a time: the servo (the daemon's lock thread) and
    the worker (the sequencer service's). The servo gives its turn away when it naps (`sleep`)
    or waits for a reply (`wait`); the worker gives the servo a turn when it is due (`serve`)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._servo_turn = False
        self._thread: threading.Thread | None = None
        self.wake_at_s: float | None = None  # the servo naps until then
        self.waiting: concurrent.futures.Future[Any] | None = None  # the servo waits for this
        self.stopping = False
        self.finished = False
        self.error: BaseException | None = None

    # -- the servo's side (in the lock thread) --------------------------------------------------

    def start(self, body: Callable[[], None]) -> None:
        """Run `body` as the servo thread, its first turn due at once."""
        self.wake_at_s = self.clock.now()
        self._thread = threading.Thread(
            target=self._main, args=(body,), name="clock-lock-virtual", daemon=True
        )
        self._thread.start()

    def sleep(self, seconds: float) -> None:
        """The lock thread's nap: the worker runs until `seconds` of virtual time have passed."""
        self.wake_at_s = self.clock.now() + seconds
        self._give_turn()

    def wait(self, future: concurrent.futures.Future[Any]) -> Any:
        """The reply to a call: the worker runs until it is there."""
        while not future.done():
            self.waiting = future
            try:
                self._give_turn()
            finally:
                self.waiting = None
        return future.result()

    def _main(self, body: Callable[[], None]) -> None:
        try:
            self._await(lambda: self._servo_turn)
            if not self.stopping:
                body()
        except _Stop:
            pass
        except BaseException as exc:  # handed to the worker, which raises it
            self.error = exc
        finally:
            with self._cond:
                self.finished = True
                self._servo_turn = False
                self._cond.notify_all()

    def _give_turn(self) -> None:
        with self._cond:
            self._servo_turn = False
            self._cond.notify_all()
        self._await(lambda: self._servo_turn)
        if self.stopping:
            raise _Stop

    def _await(self, ready: Callable[[], bool]) -> None:
        with self._cond:
            if not self._cond.wait_for(ready, HANDOVER_TIMEOUT_S):
                raise RuntimeError(f"no turn handed over within {HANDOVER_TIMEOUT_S:g} s")

    # -- the worker's side ------------------------------------------------------------------------

    def due(self) -> bool:
        """Whether the servo can go on: its reply is there, or its nap is over."""
        if self.finished:
            return False
        if self.waiting is not None:
            return self.waiting.done()
        return self.wake_at_s is not None and self.clock.now() >= self.wake_at_s

    def next_wake_s(self) -> float | None:
        """When the napping servo wakes (None: it is waiting for a reply, or gone)."""
        return None if self.finished or self.waiting is not None else self.wake_at_s

    def serve(self) -> None:
        """Let the servo run while it is due (it runs until it naps or waits again)."""
        while self.due():
            self.wake_at_s = None
            with self._cond:
                self._servo_turn = True
                self._cond.notify_all()
            self._await(lambda: not self._servo_turn)
            if self.error is not None:
                raise LockThreadFailed("the daemon's lock thread failed") from self.error

    def close(self) -> None:
        """End the servo thread at its next turn and wait for it."""
        with self._cond:
            self.stopping = True
            self._servo_turn = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(HANDOVER_TIMEOUT_S)


class WorldPulserLink:
    """The trap backend's `PulserLink` to the World's simulated controller in process: the
    controller's own request handling (what the driver host's `run` and `describe` reach over
    its socket). `played(seconds)` hears each run's controller time."""

    def __init__(self, pulser: InProcessPulser, played: Callable[[float], None]) -> None:
        self.pulser = pulser
        self.played = played

    def describe(self) -> dict[str, Any]:
        return self.pulser._dispatch({"op": "describe"})

    def run(self, shots: int, pulses: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
        try:
            reply = self.pulser._dispatch({"op": "run", "shots": shots, "schedule": pulses})
        except RequestError as exc:
            raise SequencerError(
                f"trap backend: the pulse controller refused: {exc.code}: {exc.message}"
            ) from None
        self.played(float(reply["duration_s"]))
        return reply


class QueuedWorldLab(WorldLab):
    """The World in process as the live daemon reaches its pulse controller, through the
    sequencer's queue: its interrogations (`shots`, which `SharedController` makes its queued
    ones) and its fluorescence counts (health, recovery: a counting cooling pulse, `BusLab`'s
    `count_rate`) are clock jobs."""

    def count_rate(self) -> float:
        """Cooling fluorescence now (1/s): a `presence_count_time` count as a clock job."""
        shots = self.shots
        if not isinstance(shots, QueuedClockShots):
            raise LabError("this lab's clock shots do not go through a sequencer queue")
        duration = self.pulses.presence_count_time
        return shots.count_photons(duration) / duration

    def is_ion_present(self) -> bool:
        return self.count_rate() > self.pulses.presence_threshold_rate


class _ServiceOnVirtualTime(SequencerService):
    """The service whose worker waits on virtual time, giving the servo its turns."""

    turns: Turns
    lab_world_advance: Callable[[float], None]

    def _nap(self, seconds: float, generation: int) -> None:
        before = self._generation
        self.turns.serve()
        if self._generation != before or generation != before:
            return  # the servo queued something (or resumed jobs): look again
        wake = self.turns.next_wake_s()
        now = self._clock.now()
        step = seconds if wake is None else min(seconds, max(0.0, wake - now))
        self.lab_world_advance(step)
        self.turns.serve()

    def pause(self, seconds: float) -> None:
        """The worker's wait between two steps (what `_work` does)."""
        self._nap(seconds, self._generation)


@dataclass
class ControllerTime:
    """Seconds of controller time played, and runs, per job kind."""

    seconds: dict[str, float] = field(default_factory=lambda: {"clock": 0.0, "user": 0.0})
    runs: dict[str, int] = field(default_factory=lambda: {"clock": 0, "user": 0})


class SharedController:
    """The sequencer service on `lab`'s World and pulse controller, its queue fed by the
    daemon's clock jobs (`shots`, to give the daemon as its `clock_shots`) and by users."""

    def __init__(
        self,
        lab: WorldLab,
        device: DeviceSettings,
        lock: ClockLockSettings,
        pulses: PulseCalibration,
        *,
        calibrations: Calibrations | None = None,
        max_user_slice_s: float = 2.0,
        grace_s: float = 1.0,
    ) -> None:
        self.lab = lab
        self.world = lab.world
        self.clock = world_clock(lab.world)
        self.turns = Turns(self.clock)
        self.played = ControllerTime()
        self.queue = JobQueue(None, clock=lambda: self.world.epoch_unix + self.world.now())
        # as the `sequencer` process wires it (ionpilot/commands/sequencer.py)
        self.share = ClockShare(
            min_duty=clock_duty(lock, pulses), max_user_slice_s=max_user_slice_s, grace_s=grace_s
        )
        self.backend = TrapBackend(
            device, WorldPulserLink(lab.pulser, self._played), self.share.max_user_slice_s
        )
        self.device = device
        self.service = _ServiceOnVirtualTime(
            self.queue,
            device,
            self._execute,
            BusSettings(publish_port=1, subscribe_port=2),
            "tcp://127.0.0.1:1",  # never bound: the worker is driven here
            backend="trap",
            clock=self.clock,
            share=self.share,
            calibrations=calibrations,
        )
        self.service.turns = self.turns
        self.service.lab_world_advance = self.world.advance
        self.backend.between_calls = self._between_calls
        self.shots = QueuedClockShots(self.call, pulses, device, lock.pulser)
        lab.shots = self.shots  # the lab's interrogations go through the queue
        # the lock's reported state (what anyone is told) at each change, as seen after every
        # lock cycle and every controller run: (time, state)
        self.lock_states: list[tuple[float, str]] = []
        self._reported: Callable[[], str] | None = None

    # -- the daemon's bus, in process ------------------------------------------------------------

    def call(self, target: str, method: str, args: dict[str, Any], timeout: float = 5.0) -> Any:
        """The daemon's bus call to the sequencer, in process: the service's own handler; a
        clock job's reply once the worker has played it (the lock thread waits its turn)."""
        if target != SEQUENCER or method != "call":
            raise LabError(f"{target} {method}: only the sequencer's calls are in process")
        return self.turns.wait(self.service.call_in_process(args, client="daemon"))

    def hold_jobs(self, hold: bool, reason: str) -> None:
        """The recovery's hold of user jobs (as `ionpilot daemon` sends it)."""
        self.call(
            SEQUENCER, "call", {"name": "hold", "reason": reason} if hold else {"name": "resume"}
        )

    def hold_for_lock(self, hold: bool, reason: str) -> bool:
        """The lock's own hold while it is not `locked` (holder `daemon.lock`)."""
        self.call(SEQUENCER, "call", lock_hold_call(hold, reason))
        return True

    def submit(self, qasm: str, shots: int, client: str = "user") -> str:
        """A user job, through the service's `submit` handler (compiled, or refused)."""
        reply = self.service.call_in_process(
            {"name": "submit", "qasm": qasm, "shots": shots}, client
        ).result(timeout=0)
        return str(reply["id"])

    # -- running ---------------------------------------------------------------------------------

    def start(self, daemon: Daemon) -> None:
        """The daemon's lock thread (`Daemon._run`'s loop, its naps on virtual time)."""

        def lock_thread() -> None:
            daemon.cycle.start()
            while True:
                nap = daemon.cycle.cycle()
                self._note_state()
                if nap > 0:
                    self.turns.sleep(nap)

        self._reported = lambda: daemon.lock.reported_state().value
        self.turns.start(lock_thread)

    def run_until(self, end_s: float, users: Callable[[], None] | None = None) -> None:
        """The service's worker until virtual time `end_s`; `users()` is asked before every
        step to keep the users' stream going."""
        idle = 0
        while self.world.now() < end_s:
            before = self.world.now()
            self.turns.serve()
            if users is not None:
                users()
            wait = self.service.step()
            if wait > 0:
                self.service.pause(min(wait, end_s - self.world.now()))
            idle = idle + 1 if self.world.now() == before else 0
            if idle > STALL_LOOPS:
                raise StalledLoop(f"no virtual time passed in {STALL_LOOPS} worker passes")

    def close(self) -> None:
        self.turns.close()

    def _execute(self, job: Job) -> dict[str, Any]:
        return execute_job(job, self.device, backend=self.backend)

    def _between_calls(self) -> None:
        self.turns.serve()
        self.service.between_slices()

    def _note_state(self) -> None:
        state = None if self._reported is None else self._reported()
        if state is not None and (not self.lock_states or self.lock_states[-1][1] != state):
            self.lock_states.append((self.clock.now(), state))

    def _played(self, seconds: float) -> None:
        self._note_state()
        running = self.service.running_job
        kind = self.queue.get(running).kind if running is not None else "user"
        self.played.seconds[kind] += seconds
        self.played.runs[kind] += 1
