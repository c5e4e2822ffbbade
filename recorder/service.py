"""The recorder process: every hub message into the store, history served on the bus.

One intake thread owns the store (SQLite's one writer): it drains the subscriber, queues rows and
commits them every `flush_interval` or `batch_rows`, whichever comes first, and rolls the tiers
up once a minute. While it commits, ZeroMQ's bounded queue holds what arrives; should that ever
overflow, the sequence numbers show it and the store records the gap. History requests run in the
command server's threads on read-only connections beside the writer (WAL).

Bus interface (target `recorder`): `get` with `name`:
  `history` {series, since_ns, until_ns?, every_s?, max_points?}  -> points (see query.History)
  `gaps` {since_ns, until_ns?, topic?}                            -> recorded gaps
  `series` {prefix?}                                               -> what is stored
and `status`: counts of messages, rows, duplicates, gaps, the sink's spool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from ionpilot.bus.codec import BusError, ErrorCode, Message, Request, Telemetry
from ionpilot.bus.pubsub import HeartbeatPublisher, Subscriber
from ionpilot.bus.server import CommandServer
from ionpilot.bus.settings import BusSettings
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.recorder.query import History
from ionpilot.recorder.settings import RecorderSettings
from ionpilot.recorder.sink import LineSink, line_of
from ionpilot.recorder.store import Store

log = logging.getLogger(__name__)

PROCESS = "recorder"
ROLLUP_PERIOD_S = 60.0
RETENTION_PERIOD_S = 3600.0
RECORD_FILE = "record.sqlite"


def record_path(data_dir: str | Path) -> Path:
    """Where a lab's record lives: <data_dir>/recorder/record.sqlite."""
    return Path(data_dir) / "recorder" / RECORD_FILE


class Recorder:
    """Subscribes to everything, stores it, serves it back."""

    def __init__(
        self,
        bus: BusSettings,
        settings: RecorderSettings,
        data_dir: str | Path,
        *,
        command_endpoint: str | None = None,
        clock: Clock | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        on_message: Callable[[Message], None] | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self.settings = settings
        self.path = record_path(data_dir)
        self.store = Store(self.path, settings, self._clock)
        self.history = History(self.path, settings, self._clock)
        self._context = context or zmq.Context.instance()
        self._bus = bus
        self.subscriber = Subscriber(bus, ("",), clock=self._clock, context=self._context)
        self.sink: LineSink | None = None
        if settings.sink.url:
            spool = Path(settings.sink.spool_dir or Path(data_dir) / "recorder" / "spool")
            self.sink = LineSink(settings.sink, spool, clock=self._clock)
        self.server: CommandServer | None = None
        self.heartbeat: HeartbeatPublisher | None = None
        if command_endpoint is not None:
            self.server = CommandServer(PROCESS, bus, clock=self._clock, context=self._context)
            self.server.register(PROCESS, "get", self._get)
            self.server.register(PROCESS, "status", self._status, inline=True)
            self.heartbeat = HeartbeatPublisher(bus, PROCESS, clock=self._clock)
        self._endpoint = command_endpoint
        self._on_message = on_message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recorder-intake", daemon=True)
        self.commits = 0
        self.error = ""

    # -------------------------------------------------------------------------- lifecycle

    def start(self) -> Recorder:
        if self.sink is not None:
            self.sink.start()
        if self.server is not None and self._endpoint is not None:
            self.server.bind(self._endpoint)
            self.server.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30.0)
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.server is not None:
            self.server.close()
        self.subscriber.close()
        if self.sink is not None:
            self.sink.stop()

    # ----------------------------------------------------------------------------- intake

    def _run(self) -> None:
        store = self.store
        s = self.settings
        clock = self._clock
        sock = self.subscriber.socket
        handle = self.subscriber.handle_frames
        add = store.add
        on_message = self._on_message
        sink = self.sink
        lines: list[str] = []
        next_flush = clock.now() + s.flush_interval
        next_rollup = clock.now() + ROLLUP_PERIOD_S
        next_retention = clock.now() + 60.0
        try:
            while not self._stop.is_set():
                wait_ms = max(0, int((next_flush - clock.now()) * 1000))
                if sock.poll(min(wait_ms, 200), zmq.POLLIN):
                    for _ in range(s.batch_rows):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        msg = handle(frames)
                        if msg is None:
                            continue
                        if add(msg) and sink is not None and type(msg) is Telemetry:
                            lines.extend(line_of(msg))
                        if on_message is not None:
                            on_message(msg)
                now = clock.now()
                if store.pending >= s.batch_rows or now >= next_flush:
                    store.commit()
                    self.commits += 1
                    if lines and sink is not None:
                        sink.put(lines)  # after the commit: the record is the master copy
                        lines = []
                    next_flush = now + s.flush_interval
                if now >= next_rollup:
                    store.rollup()
                    next_rollup = now + ROLLUP_PERIOD_S
                if now >= next_retention:
                    store.enforce_retention()
                    next_retention = now + RETENTION_PERIOD_S
        except Exception as exc:  # the process must end (and be restarted), not hang mute
            log.exception("recorder intake failed")
            self.error = repr(exc)
            raise
        finally:
            store.close()  # commits what is queued
            if lines and sink is not None:
                sink.put(lines)  # ... and its lines wait in the spool for the next start

    # ---------------------------------------------------------------------------- serving

    def _get(self, request: Request) -> Any:
        args = request.args
        name = args.get("name")
        try:
            if name == "history":
                return self.history.history(
                    _text(args, "series"),
                    _int(args, "since_ns"),
                    _opt_int(args, "until_ns"),
                    every_s=_opt_float(args, "every_s"),
                    max_points=_opt_int(args, "max_points"),
                    raw=args.get("raw") is True,
                )
            if name == "gaps":
                topic = args.get("topic")
                return self.history.gaps(
                    _int(args, "since_ns"),
                    _opt_int(args, "until_ns"),
                    topic if isinstance(topic, str) else None,
                )
            if name == "series":
                prefix = args.get("prefix", "")
                return self.history.series(prefix if isinstance(prefix, str) else "")
        except (ValueError, TypeError) as exc:
            raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None
        raise BusError(
            ErrorCode.BAD_REQUEST, f"recorder get: name {name!r}; allowed: history, gaps, series"
        )

    def _status(self, request: Request) -> Any:
        return self.status()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.store.stats(),
            "commits": self.commits,
            "path": str(self.path),
        }
        out["bad_frames"] = self.subscriber.bad_frames
        if self.sink is not None:
            out["sink"] = self.sink.stats()
        if self.error:
            out["error"] = self.error
        return out


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: a series name such as servo.clock.output_frequency")
    return value


def _int(args: dict[str, Any], key: str) -> int:
    value = args.get(key)
    if type(value) is not int:
        raise ValueError(f"{key}: an integer (ns since the epoch), got {value!r}")
    return value


def _opt_int(args: dict[str, Any], key: str) -> int | None:
    return None if args.get(key) is None else _int(args, key)


def _opt_float(args: dict[str, Any], key: str) -> float | None:
    value = args.get(key)
    if value is None:
        return None
    if type(value) not in (int, float):
        raise ValueError(f"{key}: a number of seconds, got {value!r}")
    return float(value)
