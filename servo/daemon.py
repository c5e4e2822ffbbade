"""The live servo daemon: the same ClockLock as the accelerated simulation, now against the lab
over the bus (the driver host's instruments), publishing its records as telemetry.

`BusLab` is the live implementation of the lab seam: a probe becomes a pulse schedule on the pulse
controller, a reading is a bus `get`, a set-point a bus `set` (refused out of limits by the host).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ionpilot.bus.codec import BusError, ErrorCode, Request
from ionpilot.bus.pubsub import HeartbeatPublisher, Publisher
from ionpilot.bus.server import CommandServer
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock
from ionpilot.servo.interrogation import ProbeSpec
from ionpilot.servo.ion_watch import IonWatch, shots_per_run
from ionpilot.servo.live_recovery import LiveRecovery
from ionpilot.servo.lock_cycle import LockCycle
from ionpilot.servo.outputs import (
    ClockUpdate,
    LockStateChanged,
    OpticalFrequency,
    ServoAlarm,
    ServoRecord,
)
from ionpilot.servo.persistence import StateStore
from ionpilot.servo.recovery import JobsHook
from ionpilot.servo.seams import LabError, LabRefused, SignalInvalid
from ionpilot.servo.settings import (
    AuxLockSettings,
    ClockLockSettings,
    HealthSettings,
    PulseCalibration,
    RecoverySettings,
)

log = logging.getLogger(__name__)

Call = Callable[..., Any]
RETRY_AFTER_LAB_ERROR_S = 2.0  # CommandClient.call(target, method, args, timeout=...)
# refused as such, nothing applied: asking again the same way cannot help
REFUSALS = frozenset({ErrorCode.OUT_OF_LIMITS, ErrorCode.FORBIDDEN, ErrorCode.BAD_REQUEST})
MAX_PENDING_ACTIONS = 16  # operator commands waiting for the lock thread; beyond: `busy`
COOL_WINDOW = "cool"  # the pulser's counting windows in a clock shot
DETECT_WINDOW = "det"


class BusLab:
    """The lab seam over the bus: pulser schedules, instrument gets and sets."""

    def __init__(self, call: Call, lock: ClockLockSettings, pulses: PulseCalibration) -> None:
        self._call = call
        self.lock = lock
        self.pulses = pulses
        self.ion_watch: IonWatch | None = None  # the health's eye on the shots (set by Daemon)

    def _bus(self, target: str, method: str, args: dict[str, Any], timeout: float = 5.0) -> Any:
        try:
            return self._call(target, method, args, timeout=timeout)
        except BusError as exc:
            text = f"{target} {method} {args.get('name', '')}: {exc}"
            if exc.code in REFUSALS:
                raise LabRefused(text) from exc
            raise LabError(text) from exc

    def schedule(self, probe: ProbeSpec, aom_frequency_hz: float) -> list[dict[str, Any]]:
        """One clock cycle as pulses: cool, the probe (Rabi π or Ramsey π/2–T–π/2), detect."""
        p = self.pulses
        ns = 1e9
        cool = round(p.cooling_time * ns)
        first: dict[str, Any] = {"t_ns": 0, "duration_ns": cool, "channel": "cool"}
        if p.watch_cooling:  # the cooling window says whether an ion is there (ion_watch.py)
            first["window"] = COOL_WINDOW
        pulses: list[dict[str, Any]] = [first]
        t = cool
        if probe.kind == "rabi":
            amplitude = 1.0 / (2.0 * p.clock_rabi_frequency * probe.pulse_time_s)
            pieces = [(probe.pulse_time_s, amplitude)]
        else:
            amplitude = 1.0 / (4.0 * p.clock_rabi_frequency * probe.pulse_time_s)
            pieces = [(probe.pulse_time_s, amplitude), (probe.pulse_time_s, amplitude)]
        if amplitude > 1.0:
            raise LabError(
                f"a {probe.pulse_time_s * 1e3:g} ms probe needs clock amplitude {amplitude:.2f} > 1 "
                f"at the calibrated Rabi frequency of {p.clock_rabi_frequency:g} Hz"
            )
        for i, (duration, amp) in enumerate(pieces):
            d_ns = round(duration * ns)
            pulses.append(
                {
                    "t_ns": t,
                    "duration_ns": d_ns,
                    "channel": "clock",
                    "amplitude": amp,
                    "phase_rad": 0.0,
                    "frequency_hz": aom_frequency_hz,
                }
            )
            t += d_ns
            if probe.kind == "ramsey" and i == 0:
                t += round(probe.dark_time_s * ns)
        pulses.append(
            {
                "t_ns": t,
                "duration_ns": round(p.detection_time * ns),
                "channel": "detect",
                "window": DETECT_WINDOW,
            }
        )
        return pulses

    def interrogate(self, probe: ProbeSpec, aom_frequency_hz: float, n_probes: int) -> int:
        """The shots in pulser runs of at most `ion_check_interval`, each run's cooling
        windows watched for the ion (`IonNotFluorescing` discards the interrogation)."""
        schedule = self.schedule(probe, aom_frequency_hz)
        shot_s = max(int(p["t_ns"]) + int(p["duration_ns"]) for p in schedule) * 1e-9
        watch = self.ion_watch if self.ion_watch is not None and self.ion_watch.enabled else None
        runs = (
            shots_per_run(n_probes, shot_s, self.pulses.ion_check_interval)
            if watch is not None
            else [n_probes]
        )
        dark = 0
        if watch is not None:
            watch.before_run()
        for shots in runs:
            budget = 5.0 + 3.0 * shots * (probe.cycle_time_s + self.pulses.cooling_time)
            result = self._bus(
                self.lock.pulser, "call", {"name": "run", "args": [shots, schedule]}, budget
            )
            cooling, detection = self._shot_counts(result, shots)
            if watch is not None and cooling is not None:
                watch.check(cooling, shot_s)
            dark += sum(c <= self.pulses.dark_threshold for c in detection)
        return dark

    def _shot_counts(self, result: object, shots: int) -> tuple[list[int] | None, list[int]]:
        """(cooling counts or None, detection counts) per shot of a run's reply."""
        counts = result.get("counts") if isinstance(result, dict) else None
        if not isinstance(counts, list) or len(counts) != shots:
            raise LabError(f"{self.lock.pulser} returned no counts for {shots} shots")
        windows = result.get("windows") if isinstance(result, dict) else None
        names = list(windows) if isinstance(windows, list) else []
        cool_at = names.index(COOL_WINDOW) if COOL_WINDOW in names else None
        detect_at = names.index(DETECT_WINDOW) if DETECT_WINDOW in names else -1
        cooling: list[int] | None = [] if cool_at is not None else None
        detection: list[int] = []
        for shot in counts:
            ok = isinstance(shot, list) and -len(shot) <= detect_at < len(shot)
            found = shot[detect_at] if ok else None
            if not isinstance(found, int) or isinstance(found, bool):
                raise LabError(f"{self.lock.pulser} returned a shot without a detection count")
            detection.append(found)
            if cooling is not None and cool_at is not None:
                value = shot[cool_at] if len(shot) > cool_at else None
                if not isinstance(value, int) or isinstance(value, bool):
                    raise LabError(f"{self.lock.pulser} returned a shot without cooling counts")
                cooling.append(value)
        return cooling, detection

    def count_rate(self) -> float:
        """Cooling fluorescence now (1/s): a `presence_count_time` gate on the pulser."""
        p = self.pulses
        self._bus(
            self.lock.pulser, "set", {"name": "count_duration", "value": p.presence_count_time}
        )
        return self.read(f"{self.lock.pulser}.counts") / p.presence_count_time

    def set_clock_aom_frequency(self, frequency_hz: float) -> None:
        self._bus(self.lock.pulser, "set", {"name": "dds_frequency", "value": frequency_hz})

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

    def publish(self, record: ServoRecord) -> None:
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
    ) -> None:
        self._clock = clock or SystemClock()
        self._bus = bus
        self.publisher = Publisher(bus, self.PROCESS, clock=self._clock)
        self.outputs = BusOutputs(self.publisher)
        self.lab = BusLab(drivers_call, lock_settings, pulses)
        self._drivers_call = drivers_call
        self.lock = ClockLock(
            lock_settings, self.lab, self._clock, self.outputs, StateStore(state_dir)
        )
        self.aux_locks = [
            AuxLock(name, settings, self.lab, self._clock, self.outputs)
            for name, settings in (aux_locks or {}).items()
        ]
        self.recovery: LiveRecovery | None = None
        if recovery is not None:  # health monitor and recovery playbooks (servo/live_recovery)
            self.recovery = LiveRecovery(
                lab=self.lab,
                lock=self.lock,
                auxes=self.aux_locks,
                clock=self._clock,
                pulses=pulses,
                recovery=recovery,
                health=health or HealthSettings(),
                state_dir=state_dir,
                publish=self.outputs.publish_map,
                publish_event=self.outputs.publish_event,
                hold_jobs=hold_jobs,
                read_flag=self._read_flag,
            )
            self.lab.ion_watch = self.recovery.ion_watch  # the shots feed its health
        self.cycle = LockCycle(
            self.lock,
            self.aux_locks,
            self._clock,
            self.recovery,
            guarded=self._guarded,
            beat=self.outputs.state,
        )
        self.heartbeat = HeartbeatPublisher(bus, self.PROCESS, clock=self._clock)
        self.server = CommandServer(self.PROCESS, bus, clock=self._clock)
        self.server.register(self.PROCESS, "status", self._status, inline=True)
        self.server.register(self.PROCESS, "get", self._status, inline=True)
        self.server.register(self.PROCESS, "call", self._command)
        self._endpoint = command_endpoint
        self._stop = threading.Event()
        self._pending: list[tuple[str, list[str] | None]] = []  # (action, signals to ack)
        self._operator_paused = False
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="clock-lock", daemon=True)

    def start(self) -> Daemon:
        self.server.bind(self._endpoint)
        self.server.start()
        self.heartbeat.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30.0)
        self.lock.persist()
        if self.recovery is not None:
            self.recovery.close()
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
            nap = self.cycle.cycle()
            if self.recovery is not None:  # the recovery engine decides about hold-over
                if nap > 0:
                    self._stop.wait(nap)
            elif self.lock.state.value in ("holdover", "unlocked"):
                # a lab error paused the lock: try again (resume re-verifies a long hold-over)
                if not self._operator_paused and self._stop.wait(RETRY_AFTER_LAB_ERROR_S) is False:
                    self.lock.resume()
                else:
                    self._stop.wait(0.2)

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
        if action == "pause":
            self._operator_paused = True
            self.lock.pause("operator request")
        elif action == "resume":
            self._operator_paused = False
            self.lock.resume()
        else:
            self._operator_paused = False
            self.lock.reacquire("operator request")

    def _status(self, request: Request) -> Any:
        lock = self.lock
        update = lock.last_update
        return {
            "aux_locks": {aux.name: aux.state for aux in self.aux_locks},
            "state": lock.reported_state().value,
            "aom_frequency_hz": lock.aom_frequency_hz,
            "drift_hz_per_s": lock.drift_hz_per_s,
            "updates": lock.updates,
            "last_correction_hz": update.correction_hz if update is not None else None,
            **(self.recovery.status() if self.recovery is not None else {}),
        }

    def _command(self, request: Request) -> Any:
        name = request.args.get("name")
        names = ("pause", "resume", "reacquire", "acknowledge", "leave_safe_state")
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
