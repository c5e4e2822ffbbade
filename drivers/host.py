"""The driver host: owns instruments, polls them, publishes telemetry, serves them on the bus.

Each instrument lives in one worker thread that alone touches it (QCoDeS and PyVISA are not
thread-safe): bus commands reach it through a bounded queue. When an instrument times out,
disconnects or answers garbage, its signals are published `INVALID`, an event says why, the worker
closes the resource and reconnects with bounded exponential back-off — and every other instrument
carries on. Nothing an instrument does can take the host down.

The host's Python threads (command server, instrument workers, heartbeat) run on one CPU
(`cpu=`, default "auto"), under the batch scheduling policy (`batch_scheduling`). They take turns at one GIL anyway, so a second CPU buys them no
Python time; what it costs is every hand-over of the GIL, and every wake-up of a thread waiting
for an instrument or a command, crossing between CPUs, which costs far more than a switch on
one CPU (most of all on a virtual machine, where waking an idle CPU leaves the guest). zmq's I/O
thread runs C without the GIL and stays free to use the other CPU. Measured with
bench/drivers.py on the 2-core lab VM: pinned, the host's CPU per read fell by about 40 % and
its reads per second about doubled; with its zmq I/O thread pinned too, much of that gain was
lost again. On a CPU that other processes keep fully busy, a pinned host gets only that CPU's
share: give it another with `cpu=`/`--cpu`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import zmq

from ionpilot.bus.codec import BusError, ErrorCode, Request
from ionpilot.bus.pubsub import HeartbeatPublisher, Publisher
from ionpilot.bus.server import CommandServer
from ionpilot.bus.settings import BusSettings
from ionpilot.core.backoff import Backoff
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.drivers.base import IonpilotDriver
from ionpilot.drivers.errors import (
    InstrumentCommandError,
    LimitsConfigError,
    OutOfLimitsError,
)

log = logging.getLogger(__name__)

LimitValues = dict[str, tuple[float | None, float | None]]
Opener = Callable[["InstrumentSpec"], IonpilotDriver]
COMMAND_QUEUE_DEPTH = 32


@dataclass(frozen=True)
class InstrumentSpec:
    """What the host needs to know of one instrument (built from the lab config)."""

    name: str
    model: str
    address: str
    timeout_s: float = 2.0
    limits: LimitValues = field(default_factory=dict)
    poll: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Reading:
    """The last value of one parameter as published: value, unit, wall time (ns), status."""

    value: Any
    unit: str
    t_ns: int
    status: str


@dataclass(slots=True)
class _Command:
    kind: str  # "get", "set", "call"
    name: str
    value: Any = None
    args: list[Any] = field(default_factory=list)
    future: Future[Any] = field(default_factory=Future)
    deadline: float = math.inf  # host clock; a command still queued after it is not applied
    caller: str = ""  # who sent it: authenticated identity (CURVE), else the declared name


class _Signal:
    """One parameter of the connected instrument as the worker reads and publishes it, looked
    up once per connection (a QDAC path lookup walks 120 parameters). A `routed` one is
    published under the name the driver gives each reading (the wavemeter's routed input)."""

    __slots__ = ("name", "param", "read", "routed", "topic", "unit")

    def __init__(self, instrument_name: str, name: str, param: Any, routed: bool) -> None:
        self.name = name
        self.param = param
        self.read: Callable[[], Any] = param.get
        self.routed = routed
        self.topic = f"tlm.{instrument_name}.{name}"
        self.unit = str(getattr(param, "unit", "") or "")


def _wire(value: Any) -> Any:
    """A driver's return value as something the bus encodes (numpy scalars, tuples, ...)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _wire(v) for k, v in value.items()}
    item = getattr(value, "item", None)
    if callable(item):
        return _wire(item())
    return str(value)


class InstrumentWorker:
    """One instrument, one thread: connect, poll on schedule, run commands, reconnect."""

    def __init__(
        self,
        spec: InstrumentSpec,
        opener: Opener,
        bus: BusSettings,
        *,
        clock: Clock | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.spec = spec
        self._opener = opener
        self._bus = bus
        self._clock = clock or SystemClock()
        self._context = context
        self.backoff = backoff or Backoff()
        self.instrument: IonpilotDriver | None = None
        self.state = "connecting"
        self.last_error = ""
        self.next_attempt = 0.0
        self.readings: dict[str, Reading] = {}
        self.units: dict[str, str] = {}
        self.stats = {"polls": 0, "poll_errors": 0, "reconnects": 0, "commands": 0}
        # C-level queue (a Queue's Condition costs a lock allocation and several lock round
        # trips per command); bounded by the two counters below, each written by one side.
        self._commands: queue.SimpleQueue[_Command | None] = queue.SimpleQueue()
        self._accept_lock = threading.Lock()
        self._accepted = 0  # commands queued (under _accept_lock)
        self._taken = 0  # commands taken off the queue (worker thread only)
        self._signals: dict[str, _Signal] = {}
        self._published_as: dict[str, str] = {}  # routed parameter -> name of its last reading
        self._due: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: Publisher | None = None

    # --------------------------------------------------------------------------- lifecycle

    def start(self) -> InstrumentWorker:
        self._thread = threading.Thread(
            target=self._run, name=f"instrument-{self.spec.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._commands.put(None)  # wake the worker (one sentinel per stop, not a command)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, command: _Command) -> Future[Any]:
        """Queue a command for the worker thread; refused at once when the queue is full."""
        if self.state != "connected":
            wait = max(0.0, self.next_attempt - self._clock.now())
            raise BusError(
                ErrorCode.INSTRUMENT_ERROR,
                f"{self.spec.name} is {self.state} ({self.last_error or 'no connection yet'}); "
                f"next connection attempt in {wait:.1f} s",
            )
        with self._accept_lock:
            if self._accepted - self._taken >= COMMAND_QUEUE_DEPTH:
                raise BusError(
                    ErrorCode.BUSY, f"{self.spec.name} has {COMMAND_QUEUE_DEPTH} commands waiting"
                )
            self._accepted += 1
            self._commands.put(command)
        return command.future

    def _take(self, timeout: float) -> _Command | None:
        """The next command (None: none within `timeout`, or a stop sentinel)."""
        try:
            command = (
                self._commands.get(timeout=timeout) if timeout > 0 else self._commands.get(False)
            )
        except queue.Empty:
            return None
        if command is not None:
            self._taken += 1
        return command

    # ----------------------------------------------------------------------------- thread

    def _run(self) -> None:
        self._publisher = Publisher(
            self._bus, self.spec.name, clock=self._clock, context=self._context
        )
        try:
            while not self._stop.is_set():
                if self.instrument is None:
                    self._connect_or_wait()
                else:
                    self._serve_once()
        finally:
            self._disconnect("host stopping", publish=False)
            self._fail_pending("host stopping")
            self._publisher.close()

    def _connect_or_wait(self) -> None:
        wait = self.next_attempt - self._clock.now()
        if wait > 0:
            self._refuse_commands_for(wait)
            return
        try:
            instrument = self._opener(self.spec)
        except Exception as exc:  # an unreachable instrument must not end the worker
            self._connection_failed(f"cannot connect: {_error_text(exc)}")
            return
        self.instrument = instrument
        self._signals = {}
        self.state = "connected"
        self.last_error = ""
        self.backoff.reset()
        now = self._clock.now()
        self._due = {name: now for name in self.spec.poll}
        self.units = {}
        for name in set(self.spec.poll) | set(instrument.telemetry_parameters()):
            try:
                self.units[name] = str(instrument.parameter_by_path(name).unit or "")
            except KeyError:
                pass
        self._event("connected", f"{self.spec.name} connected at {self.spec.address}")

    def _refuse_commands_for(self, wait: float) -> None:
        command = self._take(min(wait, 0.5))
        if command is not None and command.future.set_running_or_notify_cancel():
            command.future.set_exception(
                BusError(ErrorCode.INSTRUMENT_ERROR, f"{self.spec.name} is {self.state}")
            )

    def _serve_once(self) -> None:
        now = self._clock.now()
        next_due = min(self._due.values(), default=now + 0.5)
        command = self._take(min(next_due - now, 0.5))
        if command is not None:
            self._execute(command)
        if not self._due:
            return
        now = self._clock.now()
        for name, due in list(self._due.items()):
            if self.instrument is None or self._stop.is_set():
                return
            if due <= now:
                self._due[name] = max(due + self.spec.poll[name], now)
                self._poll(name)

    def _signal(self, name: str) -> _Signal:
        """The connected instrument's parameter `name`; KeyError if it has none."""
        signal = self._signals.get(name)
        if signal is None:
            assert self.instrument is not None
            param = self.instrument.parameter_by_path(name)
            routed = name in getattr(self.instrument, "routed_parameters", ())
            signal = self._signals[name] = _Signal(self.spec.name, name, param, routed)
        return signal

    def _poll(self, name: str) -> None:
        assert self.instrument is not None
        self.stats["polls"] += 1
        try:
            signal = self._signal(name)
        except KeyError:  # a config the driver does not match: say so once, poll the rest
            self.stats["poll_errors"] += 1
            self._due.pop(name, None)
            self._publish(name, None, "INVALID")
            self._event(
                "instrument_error",
                f"{self.spec.name} has no parameter {name!r}; not polled",
                "MAJOR",
            )
            return
        try:
            value = signal.read()
        except InstrumentCommandError as exc:  # the instrument refused: it is alive
            self.stats["poll_errors"] += 1
            self._publish(name, None, "INVALID")
            self._event("instrument_error", f"{self.spec.name}.{name}: {exc}")
            return
        except Exception as exc:  # timeout, disconnect, garbage: reconnect from scratch
            self.stats["poll_errors"] += 1
            self._connection_failed(f"reading {name} failed: {_error_text(exc)}")
            return
        self._publish_reading(signal, _wire(value))

    def _execute(self, command: _Command) -> None:
        # Started from here on: the server reports this command's outcome, never `timeout`;
        # one it cancelled at its sender's deadline (not started) is never applied.
        if not command.future.set_running_or_notify_cancel():
            return
        self.stats["commands"] += 1
        if self._clock.now() > command.deadline:
            command.future.set_exception(
                BusError(
                    ErrorCode.INSTRUMENT_TIMEOUT,
                    f"{self.spec.name}: {command.kind} {command.name} waited too long behind "
                    "other commands; not applied",
                )
            )
            return
        instrument = self.instrument
        if instrument is None:
            command.future.set_exception(
                BusError(ErrorCode.INSTRUMENT_ERROR, f"{self.spec.name} is {self.state}")
            )
            return
        try:
            result = self._apply(instrument, command)
        except BusError as exc:
            command.future.set_exception(exc)
        except (OutOfLimitsError, InstrumentCommandError, LimitsConfigError) as exc:
            # refused, nothing applied, the instrument is fine: its own stable code
            command.future.set_exception(BusError(exc.code, str(exc)))
        except (TypeError, ValueError) as exc:  # QCoDeS validators: wrong kind of value
            command.future.set_exception(BusError(ErrorCode.BAD_REQUEST, str(exc)))
        except Exception as exc:
            command.future.set_exception(
                BusError(ErrorCode.INSTRUMENT_ERROR, f"{self.spec.name}: {_error_text(exc)}")
            )
            self._connection_failed(f"{command.kind} {command.name} failed: {_error_text(exc)}")
        else:
            command.future.set_result(result)

    def _apply(self, instrument: IonpilotDriver, command: _Command) -> Any:
        if command.kind == "call":
            allowed = type(instrument).bus_methods
            if command.name not in allowed:
                raise BusError(
                    ErrorCode.FORBIDDEN,
                    f"{self.spec.name} does not serve {command.name!r}; methods: {', '.join(allowed) or 'none'}",
                )
            callers = type(instrument).bus_callers.get(command.name)
            if callers is not None and command.caller not in callers:
                raise BusError(
                    ErrorCode.FORBIDDEN,
                    f"{self.spec.name}.{command.name} is {' and '.join(callers)}'s alone (its "
                    f"authenticated identity on the bus), not {command.caller or 'anonymous'!r}'s"
                    + (
                        ": every pulse goes through the sequencer's queue (submit a job: "
                        "`ionpilot jobs submit`, `run-qasm --backend trap`; a sequencer service "
                        "started by hand speaks as itself with IONPILOT_IDENTITY=sequencer)"
                        if "sequencer" in callers
                        else ""
                    ),
                )
            result = _wire(getattr(instrument, command.name)(*command.args))
            call_reading = getattr(instrument, "call_reading", None)
            path = call_reading(command.name, command.args) if call_reading else None
            if path is not None:  # e.g. the wavemeter's measure(n): a reading of chN.frequency
                with contextlib.suppress(KeyError):  # not a parameter after all: no telemetry
                    self._publish_reading(self._signal(path), result)
            return result
        try:
            signal = self._signal(command.name)
        except KeyError:
            names = ", ".join(instrument.telemetry_parameters())
            raise BusError(
                ErrorCode.BAD_REQUEST,
                f"{self.spec.name} has no parameter {command.name!r}; parameters: {names}",
            ) from None
        if command.kind == "set":
            param = signal.param
            if not param.settable:
                raise BusError(ErrorCode.FORBIDDEN, f"{self.spec.name}.{command.name} is read-only")
            param.set(command.value)
        value = _wire(signal.read())
        self._publish_reading(signal, value)
        return {"name": command.name, "value": value, "unit": signal.unit}

    # ----------------------------------------------------------------------- connection

    def _connection_failed(self, reason: str) -> None:
        was_connected = self.instrument is not None
        self._disconnect(reason, publish=True)
        delay = self.backoff.next_delay()
        self.next_attempt = self._clock.now() + delay
        if was_connected:
            self.stats["reconnects"] += 1
        self._event(
            "disconnected", f"{self.spec.name}: {reason}; reconnecting in {delay:.1f} s", "MAJOR"
        )

    def _disconnect(self, reason: str, *, publish: bool) -> None:
        self.state = "disconnected"
        self.last_error = reason
        instrument, self.instrument = self.instrument, None
        if instrument is not None:
            try:
                instrument.close()
            except Exception as exc:  # a half-dead resource may fail to close: it is dropped anyway
                log.warning("%s: close failed: %s", self.spec.name, _error_text(exc))
        if publish:
            for name in self.spec.poll:
                self._publish(name, None, "INVALID")
        self._fail_pending(reason)

    def _fail_pending(self, reason: str) -> None:
        while True:
            try:
                command = self._commands.get(False)
            except queue.Empty:
                return
            if command is None:
                continue
            self._taken += 1
            if command.future.set_running_or_notify_cancel():
                command.future.set_exception(
                    BusError(ErrorCode.INSTRUMENT_ERROR, f"{self.spec.name}: {reason}")
                )

    # --------------------------------------------------------------------------- publish

    def _publish(self, name: str, value: Any, status: str) -> None:
        unit = self.units.get(name, "")
        name = self._published_as.get(name, name)  # a routed one: where its readings went
        t_ns = self._clock.wall_ns()
        self.readings[name] = Reading(value, unit, t_ns, status)
        if self._publisher is not None:
            self._publisher.publish(f"tlm.{self.spec.name}.{name}", value, unit, status, t_ns)

    def _publish_reading(self, signal: _Signal, value: Any) -> None:
        """A good reading: `_publish` with the topic and unit worked out once per connection."""
        t_ns = self._clock.wall_ns()
        name, topic = signal.name, signal.topic
        if signal.routed and self.instrument is not None:
            name = self._published_as[signal.name] = self.instrument.reading_name(name)
            topic = f"tlm.{self.spec.name}.{name}"
        self.readings[name] = Reading(value, signal.unit, t_ns, "OK")
        if self._publisher is not None:
            self._publisher.publish(topic, value, signal.unit, "OK", t_ns)

    def _event(self, kind: str, message: str, severity: str = "OK") -> None:
        log.info("%s", message)
        if self._publisher is not None:
            self._publisher.publish_event(kind, message, severity)

    # -------------------------------------------------------------------------- describe

    def describe(self) -> dict[str, Any]:
        """Parameters, units, limits and the last readings; answered from caches, never blocks."""
        params: dict[str, Any] = {}
        instrument = self.instrument
        if instrument is not None:
            guarded = instrument.guarded_parameters()
            for name in instrument.telemetry_parameters():
                entry: dict[str, Any] = {"unit": self.units.get(name, "")}
                if name in guarded:
                    lo, hi = guarded[name].allowed_range()
                    entry["allowed"] = [lo, hi]
                    entry["settable"] = True
                if name in self.spec.poll:
                    entry["poll_s"] = self.spec.poll[name]
                reading = self.readings.get(name)
                if reading is not None:
                    entry["last"] = {
                        "value": reading.value,
                        "t": reading.t_ns,
                        "status": reading.status,
                    }
                params[name] = entry
        return {
            "name": self.spec.name,
            "model": self.spec.model,
            "address": self.spec.address,
            "state": self.state,
            "last_error": self.last_error,
            "parameters": params,
            "methods": list(type(instrument).bus_methods) if instrument is not None else [],
            "stats": dict(self.stats),
        }


def host_cpu(cpu: int | Literal["auto"] | None = "auto") -> int | None:
    """The CPU a driver host's Python threads run on: `cpu` itself, None for no pinning, and
    for "auto" the last CPU this process may use (None where there is only one, or no way to
    pin). Several hosts on one machine should each be given their own (`--cpu`)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if cpu != "auto":
        if cpu not in allowed:
            raise ValueError(f"CPU {cpu} is not one this process may use: {allowed}")
        return cpu
    return allowed[-1] if len(allowed) > 1 else None


@contextlib.contextmanager
def _threads_started_on(cpu: int | None) -> Iterator[None]:
    """Threads started inside run on `cpu`, under the batch scheduling policy (a new thread
    inherits its creator's affinity and policy); the calling thread gets its own back
    afterwards. Batch: see `batch_scheduling`."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    policy = batch_scheduling(0)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
        if policy is not None:
            os.sched_setscheduler(0, policy, os.sched_param(0))


def batch_scheduling(tid: int) -> int | None:
    """Put thread `tid` (0: the calling one) under SCHED_BATCH; returns its policy before (None
    where the platform has no such policy).

    The host's threads share one CPU and one GIL. Under the default policy, a thread woken
    on that CPU (an instrument worker handed a command, the socket thread handed a reply)
    preempts the thread that woke it while that one still holds the GIL; it finds the GIL
    taken and sleeps again: two context switches for nothing, on every hand-off. A batch
    thread does not preempt on wake-up: it runs when the waker blocks and releases the GIL.
    Measured with bench/drivers.py (pinned): context switches per read fell from ~10 to ~5.5
    and CPU per read by ~20 %. The cost: on a CPU kept busy by other processes, a woken
    batch thread may wait up to one scheduler slice (a few ms) longer; an instrument command
    takes milliseconds anyway."""
    if not hasattr(os, "SCHED_BATCH"):
        return None
    policy = os.sched_getscheduler(tid)
    os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
    return policy


class DriverHost:
    """All instruments of one host process, their workers, and the command server for them."""

    def __init__(
        self,
        process: str,
        specs: list[InstrumentSpec],
        bus: BusSettings,
        command_endpoint: str,
        opener: Opener,
        *,
        clock: Clock | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        cpu: int | Literal["auto"] | None = "auto",
    ) -> None:
        self.process = process
        self.cpu = host_cpu(cpu)  # the one CPU of the Python threads the host starts
        self._context = context or zmq.Context.instance()
        self._clock = clock or SystemClock()
        self.workers = {
            spec.name: InstrumentWorker(spec, opener, bus, clock=self._clock, context=self._context)
            for spec in specs
        }
        self.server = CommandServer(process, bus, context=self._context, clock=self._clock)
        self._endpoint = command_endpoint
        self.heartbeat = HeartbeatPublisher(bus, process, clock=self._clock, context=self._context)
        self.server.register(process, "describe", self._describe_host, inline=True)
        self.server.register(process, "status", self._describe_host, inline=True)
        for name in self.workers:
            self.server.register(name, "get", self._get, deferred=True)
            self.server.register(name, "set", self._set, deferred=True)
            self.server.register(name, "call", self._call, deferred=True)
            self.server.register(name, "describe", self._describe, inline=True)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def start(self) -> DriverHost:
        # bound before pinning: if this is the context's first socket, zmq's I/O thread starts
        # now, free to run on any CPU
        self.server.bind(self._endpoint)
        with _threads_started_on(self.cpu):
            self.server.start()
            self.heartbeat.start()
            for worker in self.workers.values():
                worker.start()
        return self

    def wait_first_attempts(self, timeout_s: float) -> bool:
        """Wait until every instrument has been tried once (connected or not); True if so.
        A host is "ready" only then: its drivers' own start-up printing is over by that time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(w.state != "connecting" for w in self.workers.values()):
                return True
            time.sleep(0.02)
        return all(w.state != "connecting" for w in self.workers.values())

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per instrument: its state and counts, for the Prometheus exporter."""
        return {name: {"state": w.state, **w.stats} for name, w in self.workers.items()}

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.heartbeat.stop()
        self.server.close()

    def __enter__(self) -> DriverHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------------- handlers

    def _run(self, request: Request, command: _Command) -> Future[Any]:
        """Hand the command to the instrument's worker; the server replies when it completes.
        A command still queued after the budget is refused there, never applied late; nor
        after the sender has stopped waiting for it (its `ttl_s`), which would never learn
        that it was applied."""
        worker = self.workers[request.target]
        budget = worker.spec.timeout_s * 3 + 1.0  # a ramp or a long run ahead of it
        if request.ttl_s is not None and request.ttl_s < budget:
            budget = request.ttl_s
        command.deadline = self._clock.now() + budget
        return worker.submit(command)

    @staticmethod
    def _name(request: Request) -> str:
        name = request.args.get("name")
        if not isinstance(name, str) or not name:
            raise BusError(
                ErrorCode.BAD_REQUEST, "args.name (a parameter or method name) is required"
            )
        return name

    def _get(self, request: Request) -> Future[Any]:
        return self._run(request, _Command("get", self._name(request)))

    def _set(self, request: Request) -> Future[Any]:
        if "value" not in request.args:
            raise BusError(ErrorCode.BAD_REQUEST, "set needs args.value")
        value = request.args["value"]
        if not isinstance(value, bool | int | float | str):
            raise BusError(
                ErrorCode.BAD_REQUEST,
                f"value must be a number, boolean or text, not {type(value).__name__}",
            )
        return self._run(request, _Command("set", self._name(request), value=value))

    def _call(self, request: Request) -> Future[Any]:
        args = request.args.get("args", [])
        if not isinstance(args, list):
            raise BusError(ErrorCode.BAD_REQUEST, "args.args must be a list")
        # the authenticated identity on a secured bus; without CURVE, the name it declares
        caller = request.user or request.client
        return self._run(request, _Command("call", self._name(request), args=args, caller=caller))

    def _describe(self, request: Request) -> Any:
        return self.workers[request.target].describe()

    def _describe_host(self, request: Request) -> Any:
        return {
            "process": self.process,
            "instruments": {
                name: {"state": w.state, "last_error": w.last_error, "stats": dict(w.stats)}
                for name, w in self.workers.items()
            },
        }


def open_spec(spec: InstrumentSpec) -> IonpilotDriver:
    """The default opener: the registered driver of the spec's model, limits applied."""
    from ionpilot.drivers.registry import open_instrument

    return open_instrument(
        spec.name, spec.model, spec.address, spec.limits, timeout_s=spec.timeout_s
    )


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
