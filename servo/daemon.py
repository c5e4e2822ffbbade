"""The live servo daemon: the same ClockLock as the accelerated simulation, now against the lab
over the bus (the driver host's instruments), publishing its records as telemetry.

`BusLab` is the live implementation of the lab seam: a probe becomes the sequencer's clock program,
run as clock jobs in the sequencer service's queue (servo/clock_jobs.py), a reading is a bus
`get`, a set-point a bus `set` (refused out of limits by the host). Nothing is written to the
pulse controller directly: the clock program carries the frequency, the fluorescence check is a
clock job too. User jobs are held (holder `daemon.lock`) while the lock is not `locked`.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ionpilot.bus.codec import BusError, ErrorCode, Request
from ionpilot.bus.pubsub import HeartbeatPublisher, Publisher
from ionpilot.bus.server import CommandServer
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.assembly import assemble_servo
from ionpilot.servo.clock_jobs import QueuedClockShots
from ionpilot.servo.clock_shots import ClockShots
from ionpilot.servo.host_watch import HostWatch
from ionpilot.servo.interrogation import ProbeSpec
from ionpilot.servo.ion_watch import IonWatch
from ionpilot.servo.outputs import (
    ClockUpdate,
    LockStateChanged,
    OpticalFrequency,
    ServoAlarm,
    ServoRecord,
)
from ionpilot.servo.persistence import StateStore
from ionpilot.servo.playbooks import heartbeat_signal
from ionpilot.servo.recovery import JobsHook
from ionpilot.servo.seams import LabError, LabInterface, LabRefused, SignalInvalid
from ionpilot.servo.settings import (
    AuxLockSettings,
    ClockLockSettings,
    HealthSettings,
    PulseCalibration,
    RecoverySettings,
)
from ionpilot.servo.watchdog import LockStateWatchdog

log = logging.getLogger(__name__)

Call = Callable[..., Any]
# refused as such, nothing applied: asking again the same way cannot help
REFUSALS = frozenset({ErrorCode.OUT_OF_LIMITS, ErrorCode.FORBIDDEN, ErrorCode.BAD_REQUEST})
MAX_PENDING_ACTIONS = 16  # operator commands waiting for the lock thread; beyond: `busy`
AUDIT_REPLY_DEFAULT = 200  # audit entries a `get name=audit` returns unless told
AUDIT_REPLY_MAX = 500  # and at most (one reply stays well under the bus message limit)
TRAP = "trap"  # `lend_laser laser=trap`: the trap (loading, emptying) lent to an experiment
MAX_LEASE_S = 3600.0  # a lent laser comes back by itself after at most this


LockHoldHook = Callable[[bool, str], bool]  # (hold, reason) -> whether the sequencer took it
# (laser, {holder, owner, token, lease_s} or None when taken back) -> whether the sequencer took
# it: the borrower of the clock laser or the trap may then submit clock jobs with the token
LeaseHook = Callable[[str, dict[str, Any] | None], bool]
LEASED_TO_SEQUENCER = ("clock", TRAP)  # lent lasers whose borrower plays clock-kind schedules
# the recovery engine's holds that keep the lock in hold-over (no playbook is of these kinds)
HELD_FOR_BORROWER = "clock_lent"
HELD_FOR_OPERATOR = "operator_pause"
LOCK_HOLD_RETRY_S = 2.0  # a hold the sequencer did not take is sent again after this


AOM_WRITE_RESOLUTION_HZ = 1e-4  # a parked frequency closer than this to the last is not re-sent


class BusLab:
    """The lab seam over the bus: the sequencer's clock programs as clock jobs in its queue,
    instrument gets and sets."""

    def __init__(
        self,
        call: Call,
        lock: ClockLockSettings,
        pulses: PulseCalibration,
        device: DeviceSettings | None = None,
    ) -> None:
        self._call = call
        self.lock = lock
        self.pulses = pulses
        self.shots = QueuedClockShots(call, pulses, device, lock.pulser)
        self.parked_aom_frequency_hz = lock.aom_center  # where the clock light was last steered
        self._written_aom_hz = math.nan  # what the pulser's DDS was last set to (nan: not yet)

    @property
    def ion_watch(self) -> IonWatch | None:
        """The health's eye on the shots (set by Daemon)."""
        return self.shots.ion_watch

    @ion_watch.setter
    def ion_watch(self, watch: IonWatch | None) -> None:
        self.shots.ion_watch = watch

    def _bus(self, target: str, method: str, args: dict[str, Any], timeout: float = 5.0) -> Any:
        try:
            return self._call(target, method, args, timeout=timeout)
        except BusError as exc:
            text = f"{target} {method} {args.get('name', '')}: {exc}"
            if exc.code in REFUSALS:
                raise LabRefused(text) from exc
            raise LabError(text) from exc

    def interrogate(self, probe: ProbeSpec, aom_frequency_hz: float, n_probes: int) -> int:
        """The sequencer's clock program on the pulser (servo/clock_shots.py)."""
        return self.shots.interrogate(probe, aom_frequency_hz, n_probes)

    def count_rate(self) -> float:
        """Cooling fluorescence now (1/s): a `presence_count_time` counting pulse, run as a clock
        job through the sequencer."""
        duration = self.pulses.presence_count_time
        return self.shots.count_photons(duration) / duration

    def set_clock_aom_frequency(self, frequency_hz: float) -> None:
        """The servo's actuator: the clock AOM's resting frequency, where the light is parked
        between interrogations (each clock program carries its own probe frequencies). On the
        optical qubit the gate pulses are this light, so user jobs run on the servo's line
        estimate; written through the driver (its limits hold) when it has moved."""
        if not abs(frequency_hz - self._written_aom_hz) <= AOM_WRITE_RESOLUTION_HZ:  # nan: never
            self._bus(self.lock.pulser, "set", {"name": "dds_frequency", "value": frequency_hz})
            self._written_aom_hz = frequency_hz
        self.parked_aom_frequency_hz = frequency_hz

    def read(self, signal: str) -> float:
        instrument, _, parameter = signal.partition(".")
        channel = re.fullmatch(r"ch(\d+)\.frequency", parameter)
        if channel is not None:  # a fibre-switch channel: switched and read in one host command
            value = self._bus(
                instrument, "call", {"name": "measure", "args": [int(channel.group(1))]}
            )
        else:
            reply = self._bus(instrument, "get", {"name": parameter})
            value = reply.get("value") if isinstance(reply, dict) else None
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise SignalInvalid(f"{signal} has no valid reading ({value!r})")
        return float(value)

    def set(self, parameter: str, value: float) -> None:
        instrument, _, name = parameter.partition(".")
        self._bus(instrument, "set", {"name": name, "value": value})

    def limits(self, parameter: str) -> tuple[float, float] | None:
        """What the driver host allows a set of `parameter` to request (its `describe`)."""
        instrument, _, name = parameter.partition(".")
        reply = self._bus(instrument, "describe", {})
        params = reply.get("parameters") if isinstance(reply, dict) else None
        entry = params.get(name) if isinstance(params, dict) else None
        allowed = entry.get("allowed") if isinstance(entry, dict) else None
        if (
            isinstance(allowed, list)
            and len(allowed) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in allowed)
        ):
            return float(allowed[0]), float(allowed[1])
        return None

    def is_ion_present(self) -> bool:
        return self.count_rate() > self.pulses.presence_threshold_rate


class BusOutputs:
    """Servo records onto the bus: every record on its own topic as a map, plus the scalar
    topics operators and `ionpilot up` watch (`servo.clock.state`, `servo.clock.correction`)."""

    def __init__(self, publisher: Publisher) -> None:
        self._pub = publisher
        self._lock = threading.Lock()  # the daemon thread and the command server both publish
        self.on_lock_state: Callable[[str, str], None] | None = None  # (state, reason)

    def publish(self, record: ServoRecord) -> None:
        self._publish(record)
        if isinstance(record, LockStateChanged) and self.on_lock_state is not None:
            self.on_lock_state(record.state, record.reason)  # outside the lock: a bus call

    def _publish(self, record: ServoRecord) -> None:
        with self._lock:
            fields = {k: v for k, v in record.fields().items() if k not in ("t_s", "wall_ns")}
            if isinstance(record, ServoAlarm):
                self._pub.publish_event(
                    record.kind, record.message, record.severity, data={"loop": record.loop}
                )
                return
            self._pub.publish(record.topic, fields, t=record.wall_ns)
            if isinstance(record, LockStateChanged):
                self._pub.publish("servo.clock.state", record.state, t=record.wall_ns)
                self._pub.publish_event(
                    "lock_state", f"{record.previous} -> {record.state}: {record.reason}"
                )
            elif isinstance(record, ClockUpdate):
                self._pub.publish(
                    "servo.clock.correction", record.correction_hz, "Hz", t=record.wall_ns
                )
                self._pub.publish("servo.clock.error", record.error_hz, "Hz", t=record.wall_ns)
                self._pub.publish(
                    "servo.clock.aom_frequency", record.aom_frequency_hz, "Hz", t=record.wall_ns
                )
            elif isinstance(record, OpticalFrequency):
                self._pub.publish(
                    "servo.clock.output_frequency",
                    record.output_frequency_hz,
                    "Hz",
                    t=record.wall_ns,
                )

    def publish_map(self, topic: str, fields: dict[str, object]) -> None:
        """A map on its topic (`health.<signal>`, `health.aggregate`, `servo.uptime`)."""
        with self._lock:
            self._pub.publish(topic, fields)

    def publish_event(self, kind: str, message: str, severity: str, data: dict[str, Any]) -> None:
        """An audit entry as `evt.daemon.<kind>`."""
        with self._lock:
            self._pub.publish_event(kind, message, severity, data=data)

    def state(self, state: str) -> None:
        with self._lock:
            self._pub.publish("servo.clock.state", state)


def lock_hold_call(hold: bool, reason: str) -> dict[str, Any]:
    """The sequencer `call` of the lock's own hold (holder `daemon.lock`): a hold with its
    reason, or the release, which says the lock is `locked` (it is released only then), so the
    jobs it lets go name the state they run under, not the one the last clock job reported."""
    if hold:
        return {"name": "hold", "reason": reason, "client": "daemon.lock"}
    return {"name": "resume", "lock_state": "locked", "client": "daemon.lock"}


class LockHold:
    """User jobs held while the clock lock is not `locked`: the laser is not on the ions' line
    then, so nothing a job measures would mean what it says. A hold of its own (the sequencer's
    holder `daemon.lock`), so a recovery's release does not release it. Sent on every change of
    state; one the sequencer did not take (down, busy) is sent again, at most every
    `LOCK_HOLD_RETRY_S`, from the lock's state beat."""

    def __init__(self, hook: LockHoldHook, clock: Clock) -> None:
        self._hook = hook
        self._clock = clock
        self.held: bool | None = None  # what the sequencer last took (None: nothing yet)
        self._want: tuple[bool, str] | None = None
        self._tried_at = -math.inf

    def follow(self, state: str, reason: str = "") -> None:
        hold = state != "locked"
        if self._want is None or self._want[0] != hold or (hold and reason):
            why = f"clock lock is {state}" + (f" ({reason})" if reason else "")
            self._want = (hold, why)
            self._send()
        elif self.held != hold and self._clock.now() - self._tried_at >= LOCK_HOLD_RETRY_S:
            self._send()

    def _send(self) -> None:
        assert self._want is not None
        hold, why = self._want
        self._tried_at = self._clock.now()
        if self._hook(hold, why):
            self.held = hold


class Daemon:
    """The clock lock running live: a thread stepping the lock, heartbeats, a command target."""

    PROCESS = "daemon"

    def __init__(
        self,
        lock_settings: ClockLockSettings,
        pulses: PulseCalibration,
        bus: BusSettings,
        *,
        drivers_call: Call,
        command_endpoint: str,
        state_dir: str | Path,
        aux_locks: dict[str, AuxLockSettings] | None = None,
        clock: Clock | None = None,
        recovery: RecoverySettings | None = None,
        health: HealthSettings | None = None,
        hold_jobs: JobsHook | None = None,
        device: DeviceSettings | None = None,
        lab: LabInterface | None = None,
        clock_shots: ClockShots | None = None,
        lock_hold: LockHoldHook | None = None,
        driver_hosts: Mapping[str, tuple[str, ...]] | None = None,
        lease_hook: LeaseHook | None = None,
    ) -> None:
        """`lab` (with its `clock_shots`) replaces the bus lab: the in-process harness lab on
        virtual time, so a test runs exactly this assembly without driver hosts. `lock_hold`
        holds the sequencer's user jobs while the lock is not `locked` (LockHold).
        `driver_hosts` (host -> its instruments, from the lab file): every host's heartbeat is
        watched, each with its stale-driver playbook (default: `recovery.driver_process`).
        `lease_hook` tells the sequencer who borrows the clock laser or the trap (and the
        lease's secret token), so that borrower's clock-kind schedules are taken."""
        self._clock = clock or SystemClock()
        self._bus = bus
        self.publisher = Publisher(bus, self.PROCESS, clock=self._clock)
        self.outputs = BusOutputs(self.publisher)
        self.bus_lab = BusLab(drivers_call, lock_settings, pulses, device)
        self.lab: LabInterface = self.bus_lab if lab is None else lab
        self._drivers_call = drivers_call
        # the lock state goes out from outside the lock thread too: stuck in a dead host's bus
        # call, that thread cannot say its lock has gone uncorrected into hold-over
        self.state_watchdog = LockStateWatchdog(
            lambda: self.lock.reported_state().value, self.outputs.state, self._clock
        )
        servo = assemble_servo(
            lab=self.lab,
            shots=self.bus_lab.shots if lab is None else clock_shots,
            clock=self._clock,
            lock_settings=lock_settings,
            pulses=pulses,
            aux_locks=dict(aux_locks or {}),
            recovery=recovery,
            health=health,
            outputs=self.outputs,
            store=StateStore(state_dir),
            audit_path=Path(state_dir) / "audit.sqlite",
            publish=self.outputs.publish_map,
            publish_event=self.outputs.publish_event,
            hold_jobs=hold_jobs,
            read_flag=self._read_flag if lab is None else None,
            guarded=self._guarded,
            beat=self._beat,
            driver_hosts=driver_hosts,
        )
        self.lock = servo.lock
        self.lock_hold = None if lock_hold is None else LockHold(lock_hold, self._clock)
        if self.lock_hold is not None:
            self.outputs.on_lock_state = self.lock_hold.follow
        self.bus_lab.shots.context = self._clock_context
        if isinstance(clock_shots, QueuedClockShots):  # a queue in process (the harness)
            clock_shots.context = self._clock_context
        self.aux_locks = servo.auxes
        self.recovery = servo.recovery
        self.cycle = servo.cycle
        self.host_watch: HostWatch | None = None
        if self.recovery is not None and recovery is not None and lab is None:
            # the driver host is alive while its heartbeats arrive, not only when a sensor
            # pass (at most once per health period, after a clock step) hears from it
            hosts = [recovery.driver_process, *(driver_hosts or {})]
            self.host_watch = HostWatch(bus, hosts, self._clock)
            for host in self.host_watch.processes:
                signal = heartbeat_signal(recovery, host)
                self.recovery.health.feed(signal, self.host_watch.feed_of(host))
        self.heartbeat = HeartbeatPublisher(bus, self.PROCESS, clock=self._clock)
        self.server = CommandServer(self.PROCESS, bus, clock=self._clock)
        self.server.register(self.PROCESS, "status", self._status, inline=True)
        self.server.register(self.PROCESS, "get", self._status, inline=True)
        self.server.register(self.PROCESS, "call", self._command)
        self._endpoint = command_endpoint
        self._stop = threading.Event()
        self._pending: list[tuple[str, list[str] | None]] = []  # (action, signals to ack)
        self.cycle.operator_paused = False
        self._pending_lock = threading.Lock()
        self._lent: dict[str, tuple[str, float]] = {}  # laser lent -> (owner, lease end, s)
        self._tokens: dict[str, tuple[str, str]] = {}  # laser lent -> (holder identity, token)
        self._lease_hook = lease_hook
        self._thread = threading.Thread(target=self._run, name="clock-lock", daemon=True)

    def start(self) -> Daemon:
        self.server.bind(self._endpoint)
        self.server.start()
        self.heartbeat.start()
        if self.host_watch is not None:
            self.host_watch.start()
        self._thread.start()
        self.state_watchdog.start()
        return self

    def stop(self) -> None:
        self.state_watchdog.stop()
        self._stop.set()
        self._thread.join(30.0)
        self.lock.persist()
        if self.recovery is not None:
            self.recovery.close()
        if self.host_watch is not None:
            self.host_watch.stop()
        self.heartbeat.stop()
        self.server.close()
        self.publisher.close()

    def _run(self) -> None:
        self.cycle.start()
        while not self._stop.is_set():
            with self._pending_lock:
                pending, self._pending = self._pending, []
            for action, signals in pending:
                self._apply(action, signals)
            self._end_expired_leases()
            nap = self.cycle.cycle()
            if nap > 0:
                self._stop.wait(nap)

    def _beat(self, state: str) -> None:
        """The lock's state, at least once a second: published (through the watchdog, which
        tells hold-over if the lock has gone uncorrected), and the jobs' hold kept."""
        self.state_watchdog.beat(state)
        if self.lock_hold is not None:
            self.lock_hold.follow(state)

    def _clock_context(self) -> dict[str, Any]:
        """What each clock job tells the sequencer about the lock, for its user jobs' results:
        the state, and the laser's fractional offset from the ion's line at the last update."""
        update = self.lock.last_update
        offset = None if update is None else update.error_hz / self.lock.settings.clock_frequency
        return {"lock_state": self.lock.reported_state().value, "fractional_offset": offset}

    def _read_flag(self, signal: str) -> bool:
        """An on/off parameter (`rf_drive.output`), which the lab seam's `read` refuses."""
        instrument, _, parameter = signal.partition(".")
        try:
            reply = self._drivers_call(instrument, "get", {"name": parameter}, timeout=5.0)
        except BusError as exc:
            raise LabError(f"{signal}: {exc}") from exc
        value = reply.get("value") if isinstance(reply, dict) else None
        if not isinstance(value, bool):
            raise SignalInvalid(f"{signal} is not on/off ({value!r})")
        return value

    def _guarded(self, action: Callable[[], object], what: str) -> None:
        """Start-up reads go through the lab; a lab error there is reported, not fatal."""
        try:
            action()
        except LabError as exc:
            self.publisher.publish_event("aux_error", f"{what}: {exc}", "MAJOR")

    def _apply(self, action: str, signals: list[str] | None = None) -> None:
        verb, _, who = action.partition(":")
        if verb in ("acknowledge", "leave_safe_state") and self.recovery is not None:
            if verb == "acknowledge":
                self.recovery.acknowledge(who or "unknown", signals)
            else:
                self.recovery.operator_resume(who or "unknown")
            return
        if who == TRAP and verb in ("lend", "take_back"):
            self._trap_lease(verb == "lend")
            return
        if verb in ("lend", "take_back") and who != "clock":  # an aux lock: let go / take over
            for aux in self.aux_locks:
                if aux.name == who and verb == "lend":
                    aux.stop(lent=True)
                elif aux.name == who:
                    self._guarded(aux.start, f"{who} lock taking its laser back")
            return
        if action == "lend:clock":  # hold over, and a fresh comb reading for the borrower's scale
            self._guarded(self.lock.measure_optical_frequency, "comb reading for a borrower")
            self._hold_over(HELD_FOR_BORROWER, "clock laser lent")
        elif action == "pause":
            self._hold_over(HELD_FOR_OPERATOR, "operator request")
        elif action == "take_back:clock" and TRAP in self._lent:
            self._release_holdover()
            return  # the trap is still lent: the lock holds over until it is back
        elif action in ("resume", "take_back:clock"):
            self._release_holdover()
            self.cycle.operator_paused = False
            self.lock.resume()
        else:
            self._release_holdover()
            self.cycle.operator_paused = False
            self.lock.reacquire("operator request")

    def _hold_over(self, holder: str, reason: str) -> None:
        """Pause the lock and keep it in hold-over until resumed or taken back: the recovery
        engine, which resumes a lock a lab error paused after its grace, leaves a held one."""
        self.cycle.operator_paused = True
        if self.recovery is not None:
            self.recovery.engine.held[holder] = reason
        self.lock.pause(reason)

    def _release_holdover(self) -> None:
        if self.recovery is not None:
            for holder in (HELD_FOR_BORROWER, HELD_FOR_OPERATOR):
                self.recovery.engine.held.pop(holder, None)

    def _status(self, request: Request) -> Any:
        if request.args.get("name") == "audit":  # `get name=audit [limit=N]`: the audit trail
            return self._audit(request.args.get("limit", AUDIT_REPLY_DEFAULT))
        lock = self.lock
        update = lock.last_update
        return {
            "aux_locks": {aux.name: aux.state for aux in self.aux_locks},
            "state": lock.reported_state().value,
            "aom_frequency_hz": lock.aom_frequency_hz,
            "drift_hz_per_s": lock.drift_hz_per_s,
            "updates": lock.updates,
            "last_correction_hz": update.correction_hz if update is not None else None,
            **self._lent_status(),
            **(self.recovery.status() if self.recovery is not None else {}),
        }

    def metrics(self) -> dict[str, Any]:
        """Plain numbers for the Prometheus exporter, read at scrape time (no counting here)."""
        out: dict[str, Any] = {"lock_state": self.lock.state.value, "updates": self.lock.updates}
        if self.recovery is not None:
            out["health"] = {
                name: int(st.severity) for name, st in self.recovery.health.statuses().items()
            }
            out["uptime_fraction"] = self.recovery.uptime.uptime
            out["faults_total"] = self.recovery.uptime.fault_count
            out["escalations_total"] = self.recovery.engine.escalation_count
            kinds = self.recovery.uptime.summary()
            out["faults_by_kind"] = {k: v["count"] for k, v in kinds.items()}
            out["recoveries_by_kind"] = {k: v["recovered"] for k, v in kinds.items()}
        return out

    def _audit(self, limit: object) -> list[dict[str, object]]:
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 0 < limit <= AUDIT_REPLY_MAX
        ):
            raise BusError(
                ErrorCode.BAD_REQUEST, f"limit must be an integer in 1..{AUDIT_REPLY_MAX}"
            )
        return self.recovery.audit.latest(limit) if self.recovery is not None else []

    def _command(self, request: Request) -> Any:
        name = request.args.get("name")
        if name in ("lend_laser", "return_laser"):
            return self._laser_lease(str(name), request.args, _identity(request))
        names = (
            "pause",
            "resume",
            "reacquire",
            "acknowledge",
            "leave_safe_state",
            "lend_laser",
            "return_laser",
        )
        if name not in names:
            raise BusError(
                "forbidden", f"daemon does not serve {name!r}; methods: {', '.join(names)}"
            )
        action = str(name)
        if name in ("acknowledge", "leave_safe_state"):
            action = f"{name}:{request.client or 'unknown'}"  # recorded with who sent it
        signals = request.args.get("signals")  # acknowledge: only these (absent: all latched)
        chosen = [str(s) for s in signals] if isinstance(signals, list) else None
        with self._pending_lock:
            # the lock thread takes these between steps (a step may take seconds): a script
            # calling in a loop must not grow the list without bound
            if len(self._pending) >= MAX_PENDING_ACTIONS:
                raise BusError(
                    ErrorCode.BUSY,
                    f"{len(self._pending)} daemon commands are waiting for the lock thread",
                )
            self._pending.append((action, chosen))
        return {"queued": name}

    # ------------------------------------------------------------ lasers lent to an experiment

    def _lent_status(self) -> dict[str, Any]:
        """Who holds which laser (and until when), and the clock light at the ion as the comb
        last measured it (laser + steer), for an experiment to put line scans on the optical
        scale."""
        optical = self.lock.last_optical
        return {
            "lent": {k: {"owner": o, "lease_ends_s": t} for k, (o, t) in self._lent.items()},
            "optical_frequency_hz": optical.output_frequency_hz if optical is not None else None,
            "optical_measured_s": optical.t_s if optical is not None else None,
        }

    def _laser_lease(self, name: str, args: dict[str, Any], holder: str = "") -> dict[str, Any]:
        """`call name=lend_laser laser=L owner=WHO lease_s=S` (L: `clock`, or an aux lock's
        name): the clock lock holds over (steering on its drift estimate), an aux lock lets go
        of its piezo, until `return_laser laser=L owner=WHO` or the lease ends (a crashed script
        cannot keep it). Refused (`busy`, nothing changed) during a recovery, while the lock is
        not locked, or while someone else holds the laser. The clock laser and the trap come
        with a secret `lease` token in the reply, told to the sequencer with the borrower's
        identity (`holder`): its clock-kind schedules carry it."""
        owner, laser = args.get("owner"), args.get("laser", "clock")
        if not isinstance(owner, str) or not owner or len(owner) > 128:
            raise BusError(ErrorCode.BAD_REQUEST, "owner (text, 1..128 characters) is required")
        auxes = {aux.name: aux for aux in self.aux_locks}
        if laser not in ("clock", TRAP) and laser not in auxes:
            raise BusError(
                ErrorCode.BAD_REQUEST,
                f"laser must be 'clock', '{TRAP}' or an aux lock ({', '.join(auxes) or 'none'})",
            )
        if laser == TRAP and self.recovery is None:
            raise BusError(ErrorCode.BAD_REQUEST, "no recovery engine here: nothing to hand over")
        if name == "return_laser":
            with self._pending_lock:
                lent = self._lent.get(laser)
                if lent is None or lent[0] != owner:
                    now = f"lent to {lent[0]!r}" if lent is not None else "not lent"
                    raise BusError(
                        ErrorCode.BAD_REQUEST,
                        f"{owner!r} does not hold the {laser} laser ({now})",
                    )
                del self._lent[laser]
                self._tokens.pop(laser, None)
                self._pending.append((f"take_back:{laser}", None))
            self._tell_sequencer(laser, None)
            return {"returned_by": owner, "laser": laser}
        with self._pending_lock:
            lent = self._lent.get(laser)
            lease = args.get("lease_s")
            if (
                isinstance(lease, bool)
                or not isinstance(lease, int | float)
                or not 0 < lease <= MAX_LEASE_S
            ):
                raise BusError(
                    ErrorCode.BAD_REQUEST,
                    f"lease_s must be a number of seconds in (0, {MAX_LEASE_S:g}]",
                )
            recovering = self.recovery.status().get("recovering") if self.recovery else ""
            if recovering:
                raise BusError(
                    ErrorCode.BUSY,
                    f"the {laser} laser is not lent during a recovery ({recovering} running); "
                    "ask again when the lab is back",
                )
            if lent is not None and lent[0] != owner:
                raise BusError(
                    ErrorCode.BUSY,
                    f"the {laser} laser is lent to {lent[0]!r} for another "
                    f"{lent[1] - self._clock.now():.0f} s",
                )
            on_lock = laser in ("clock", TRAP)
            state = self.lock.reported_state().value if on_lock else auxes[laser].state
            if lent is None and state != "locked":
                raise BusError(
                    ErrorCode.BUSY,
                    f"the {laser} lock is {state}: nothing to lend until it is locked",
                )
            if len(self._pending) >= MAX_PENDING_ACTIONS:
                raise BusError(ErrorCode.BUSY, "the daemon's command list is full")
            held = self._tokens.get(laser)
            if lent is not None and held is not None and held[0] != holder:
                raise BusError(
                    ErrorCode.BUSY,
                    f"the {laser} laser is lent to {lent[0]!r} as {held[0]!r}, not as {holder!r}",
                )
            until = self._clock.now() + float(lease)
            self._lent[laser] = (owner, until)
            token = held[1] if held is not None else secrets.token_hex(16)
            self._tokens[laser] = (holder, token)
            if lent is None:
                self._pending.append((f"lend:{laser}", None))
        reply: dict[str, Any] = {"laser": laser, "lent_to": owner, "lease_ends_s": until}
        if laser in LEASED_TO_SEQUENCER:
            told = {"holder": holder, "owner": owner, "token": token, "lease_s": float(lease)}
            reply["lease"] = token
            reply["sequencer_told"] = self._tell_sequencer(laser, told)
        self.outputs.publish_event(
            "laser_lent", f"{laser} laser lent to {owner} for {float(lease):g} s", "OK", {}
        )
        return reply

    def _tell_sequencer(self, laser: str, lease: dict[str, Any] | None) -> bool:
        """The sequencer learns who may play clock-kind schedules with this laser or trap
        (None: nobody any more; a lease it missed ends there by itself)."""
        if self._lease_hook is None or laser not in LEASED_TO_SEQUENCER:
            return False
        return self._lease_hook(laser, lease)

    def _trap_lease(self, lend: bool) -> None:
        """The trap lent (`lend:trap`): the ion-loss playbook may not start (the borrower empties
        and loads the trap itself), the lock holds over, user jobs are held with it. Taken back:
        the chain is verified; whole, the lock resumes; incomplete, the ion-loss playbook reloads
        and verifies it before the lock resumes."""
        assert self.recovery is not None
        engine = self.recovery.engine
        if lend:
            engine.held["ion_loss"] = "trap lent"
            self.cycle.operator_paused = True
            self.lock.pause("trap lent")
            return
        engine.held.pop("ion_loss", None)
        if engine.chain_back("the trap's borrower") and "clock" not in self._lent:
            self.cycle.operator_paused = False
            self.lock.resume()
        elif "clock" not in self._lent:
            self.cycle.operator_paused = False  # the reload's episode resumes the lock

    def _end_expired_leases(self) -> None:
        """The lock thread takes a laser back once its lease has run out."""
        with self._pending_lock:
            now = self._clock.now()
            expired = [(k, o) for k, (o, until) in self._lent.items() if now >= until]
            for laser, _ in expired:
                del self._lent[laser]
                self._tokens.pop(laser, None)
        for laser, owner in expired:
            self._apply(f"take_back:{laser}")
            self.outputs.publish_event(
                "laser_lease_expired", f"{owner} did not return the {laser} laser", "MINOR", {}
            )


def _identity(request: Request) -> str:
    """Who sent `request`: its authenticated identity (CURVE), else the name it declares."""
    return request.user or request.client or "anonymous"
