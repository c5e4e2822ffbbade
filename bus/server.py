"""The command server: one ROUTER socket per process, whitelisted methods, structured errors.

The socket lives in a thread of its own that sits in a plain blocking receive, exactly like a
bare REP loop, and cheap handlers (`inline=True`) answer right there. Measured on the 2-core
lab PC, every extra Python step between two receives costs several times its hot-loop price
(cold caches after each context switch), so the loop avoids `zmq_poll`, enum flag arithmetic
and `getsockopt`. Coroutine handlers run on an asyncio loop (the caller's, e.g. the daemon's,
or one the server starts), blocking ones in a bounded thread pool; their replies come back
through a queue, and the thread that finished one wakes the socket thread with an empty
message from a private in-process DEALER (whose routing id is a random secret) connected to
the ROUTER itself. So a slow handler delays neither other requests nor heartbeats. At most
`max_in_flight` deferred requests run at once; beyond that the server answers `busy`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import zmq

from ionpilot.bus.clock import Clock, SystemClock
from ionpilot.bus.codec import (
    METHODS,
    BusError,
    Codec,
    DecodeError,
    ErrorCode,
    Reply,
    Request,
    Value,
    check_name,
)
from ionpilot.bus.hub import hard_frame_limit
from ionpilot.bus.settings import BusSettings
from ionpilot.bus.wire import MAX_FRAMES

log = logging.getLogger(__name__)

Handler = Callable[[Request], Any]  # returns a wire value, or an awaitable of one
Authorize = Callable[[Request], None]  # raises BusError(forbidden) to refuse

MAX_ROUTE_FRAME_BYTES = 256
# Plain ints: pyzmq's flag enums make every `|` and `&` a Python-level call.
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK


@dataclass(frozen=True)
class _Entry:
    fn: Handler
    is_async: bool
    inline: bool
    deferred: bool = False  # called in the socket thread, returns a concurrent Future


class CommandServer:
    """Serves commands for one process and the targets (instruments) it owns."""

    def __init__(
        self,
        process: str,
        settings: BusSettings,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        clock: Clock | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.process = check_name(process)
        self._settings = settings
        self._context = context or zmq.Context.instance()
        self._clock = clock or SystemClock()
        self._authorize = authorize
        self._codec = Codec(settings.max_message_bytes)
        self._encode_reply = self._codec.encode_reply
        self._encode_result = self._codec.encode_result
        self._decode_request = self._codec.decode_request
        self._targets: dict[str, dict[str, _Entry]] = {}
        self._sock: zmq.Socket[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, settings.handler_threads), thread_name_prefix=f"cmd-{process}"
        )
        self._futures: set[concurrent.futures.Future[Any]] = set()
        self._done: deque[tuple[list[bytes], int, concurrent.futures.Future[Any]]] = deque()
        self._wake_lock = threading.Lock()  # the waker socket is used by one thread at a time
        self._waker: zmq.Socket[bytes] | None = None
        self._wake_id = b"\xffwake-" + secrets.token_bytes(16)  # no peer can guess it
        self._endpoint = ""
        self._running = False
        self._own_loop: threading.Thread | None = None
        self.in_flight = 0
        self.stats = {"requests": 0, "replies": 0, "bad_frames": 0, "busy": 0, "send_errors": 0}
        self.add_target(process)
        self.register(process, "list", self._list, inline=True)

    # ------------------------------------------------------------------------------ registry

    def add_target(self, target: str) -> None:
        """Make `target` known (answers `ping`); its methods come with `register`."""
        if target not in self._targets:
            self._targets[check_name(target)] = {}
            self.register(target, "ping", self._ping, inline=True)

    def register(
        self,
        target: str,
        method: str,
        handler: Handler,
        *,
        inline: bool = False,
        deferred: bool = False,
    ) -> None:
        """Serve `method` on `target` with `handler(request) -> value`.

        `inline=True` runs a sync handler in the socket loop: only for handlers that never block
        (reading a cached value). `deferred=True`: a sync handler, also run in the socket loop,
        that only hands the work to a thread of its own and returns a
        `concurrent.futures.Future` of the value; the reply goes out when it completes, with no
        thread or event loop in between (a driver host's instrument workers). Other sync
        handlers run in the thread pool; coroutine functions run as tasks. Handlers refuse with
        `raise BusError(code, message)`, or a deferred one by failing its future with it.
        """
        if method not in METHODS:
            raise ValueError(f"{method!r} is not a bus method; allowed: {sorted(METHODS)}")
        self.add_target(target)
        is_async = inspect.iscoroutinefunction(handler)
        if deferred and (is_async or inline):
            raise ValueError("a deferred handler is a plain function returning a Future")
        self._targets[target][method] = _Entry(handler, is_async, inline and not is_async, deferred)

    def targets(self) -> dict[str, list[str]]:
        return {t: sorted(m) for t, m in sorted(self._targets.items())}

    def _ping(self, request: Request) -> Value:
        return {"process": self.process, "target": request.target, "t": self._clock.wall_ns()}

    def _list(self, request: Request) -> Value:
        return self.targets()

    # ------------------------------------------------------------------------------- frames

    def handle_frames(self, frames: list[bytes]) -> list[bytes] | None:
        """Turn one received ROUTER message into reply frames, or None when the reply comes
        later (deferred handler) or cannot be routed (counted). Never raises."""
        self.stats["requests"] += 1
        try:
            return self._handle(frames)
        except Exception as exc:  # a bug here must not kill the socket loop
            log.exception("command server %s: unexpected failure", self.process)
            self.stats["bad_frames"] += 1
            try:
                return [frames[0], self._encode_reply(Reply.failure(None, "internal", repr(exc)))]
            except Exception:
                return None

    def _handle(self, frames: list[bytes]) -> list[bytes] | None:
        n = len(frames)
        if n < 2:
            self.stats["bad_frames"] += 1
            return None  # no identity to answer to
        if n > 2 and (n > MAX_FRAMES or any(len(f) > MAX_ROUTE_FRAME_BYTES for f in frames[1:-1])):
            self.stats["bad_frames"] += 1
            return [frames[0], self._fail(None, ErrorCode.BAD_REQUEST, "malformed envelope")]
        route = frames[:-1]
        payload = self._answer(route, frames[-1])
        return None if payload is None else [*route, payload]

    def _answer(self, route: list[bytes], data: bytes) -> bytes | None:
        """The reply payload to one request, or None when a deferred handler answers later."""
        try:
            request = self._decode_request(data)
        except DecodeError as exc:
            self.stats["bad_frames"] += 1
            return self._fail(exc.request_id, ErrorCode.BAD_REQUEST, str(exc))
        return self._dispatch(route, request)

    def _fail(self, rid: int | None, code: str, message: str) -> bytes:
        return self._encode_reply(Reply.failure(rid, code, message))

    def _dispatch(self, route: list[bytes], req: Request) -> bytes | None:
        rid = req.id
        if req.method not in METHODS:
            return self._fail(rid, ErrorCode.UNKNOWN_METHOD, "not a bus method")
        methods = self._targets.get(req.target)
        if methods is None:
            return self._fail(rid, ErrorCode.UNKNOWN_TARGET, f"{self.process} has no {req.target}")
        entry = methods.get(req.method)
        if entry is None:
            return self._fail(rid, ErrorCode.UNKNOWN_METHOD, f"{req.target} has no {req.method}")
        name = req.args.get("name")
        if type(name) is str and name.startswith("_"):
            return self._fail(rid, ErrorCode.FORBIDDEN, "private names are not served")
        if self._authorize is not None:
            try:
                self._authorize(req)
            except BusError as exc:
                return self._fail(rid, exc.code, exc.message)
        if entry.inline:
            try:
                value = entry.fn(req)
            except BusError as exc:
                return self._fail(rid, exc.code, exc.message)
            except Exception as exc:
                return self._fail(rid, ErrorCode.INTERNAL, _describe(exc))
            return self._result(rid, value)
        if not self._running:
            return self._fail(rid, ErrorCode.INTERNAL, "server is not running")
        if self.in_flight >= self._settings.max_in_flight:
            self.stats["busy"] += 1
            return self._fail(rid, ErrorCode.BUSY, "too many requests in progress")
        future: concurrent.futures.Future[Any]
        if entry.deferred:
            try:
                future = entry.fn(req)
            except BusError as exc:
                return self._fail(rid, exc.code, exc.message)
            except Exception as exc:
                return self._fail(rid, ErrorCode.INTERNAL, _describe(exc))
            if not isinstance(future, concurrent.futures.Future):
                return self._fail(rid, ErrorCode.INTERNAL, "deferred handler returned no Future")
        elif entry.is_async:
            future = asyncio.run_coroutine_threadsafe(entry.fn(req), self._async_loop())
        else:
            future = self._executor.submit(entry.fn, req)
        self.in_flight += 1
        self._futures.add(future)
        future.add_done_callback(partial(self._completed, route, rid))
        return None

    def _result(self, rid: int, value: Value) -> bytes:
        try:
            return self._encode_result(rid, value)
        except BusError as exc:
            return self._fail(rid, ErrorCode.INTERNAL, f"reply not encodable: {exc}")

    def _completed(
        self, route: list[bytes], rid: int, future: concurrent.futures.Future[Any]
    ) -> None:
        """Runs in whichever thread finished the handler: hand over to the socket thread."""
        self._done.append((route, rid, future))
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:  # one thread at a time on the socket, never after close
            if self._waker is not None:
                try:
                    self._waker.send(b"", _NOBLOCK)
                except zmq.ZMQError:
                    pass  # queue full (a wake-up is pending anyway) or context ending

    def _finish(
        self, route: list[bytes], rid: int, future: concurrent.futures.Future[Any]
    ) -> list[bytes]:
        self._futures.discard(future)
        self.in_flight -= 1
        if future.cancelled():
            payload = self._fail(rid, ErrorCode.INTERNAL, "cancelled (server stopping)")
        elif (exc := future.exception()) is None:
            payload = self._result(rid, future.result())
        elif isinstance(exc, BusError):
            payload = self._fail(rid, exc.code, exc.message)
        else:
            payload = self._fail(rid, ErrorCode.INTERNAL, _describe(exc))
        return [*route, payload]

    # ------------------------------------------------------------------------------- socket

    def bind(self, address: str) -> str:
        """Bind the ROUTER (`tcp://127.0.0.1:0` picks a free port); returns the real endpoint."""
        if self._sock is None:
            sock = self._context.socket(zmq.ROUTER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, self._settings.high_water_mark)
            sock.setsockopt(zmq.RCVHWM, self._settings.high_water_mark)
            sock.setsockopt(zmq.MAXMSGSIZE, hard_frame_limit(self._settings.max_message_bytes))
            self._sock = sock
        if address.endswith(":0"):
            address = address[:-2] + ":*"
        self._sock.bind(address)
        self._endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self._endpoint

    @property
    def endpoint(self) -> str:
        """The address clients connect to (the last one bound), "" before `bind`."""
        return self._endpoint

    def _send(self, frames: list[bytes]) -> None:
        assert self._sock is not None
        send = self._sock.send
        try:  # ROUTER never blocks (it drops for an unknown or full peer); Again only up front
            for frame in frames[:-1]:
                send(frame, _MORE_NOBLOCK)
            send(frames[-1], _NOBLOCK)
            self.stats["replies"] += 1
        except zmq.ZMQError:  # peer gone or its queue full: the client will time out
            self.stats["send_errors"] += 1

    def _async_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:  # nobody gave us one: run our own, on first use
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name=f"cmd-async-{self.process}", daemon=True
            )
            thread.start()
            self._loop, self._own_loop = loop, thread
        return self._loop

    def _serve(self) -> None:
        """The socket thread: receive, answer, repeat; a message from the waker means
        "finished handlers are waiting" (or "stop")."""
        sock = self._sock
        assert sock is not None
        recv = sock.recv
        send = super(zmq.Socket, sock).send  # the Cython send: pyzmq's wrapper only adds cost
        wake_id = self._wake_id
        done = self._done
        stats = self.stats
        answer = self._answer
        while self._running:
            try:
                route = recv()  # blocking: a ROUTER message is the peer's identity + its frames
                frame = recv(0, copy=False)  # always there: multipart messages arrive whole
            except zmq.ZMQError:  # the context is being destroyed under us
                return
            if frame.more:  # an envelope (REQ-style client) or garbage: the general path
                frames = [route, frame.bytes]
                while frame.more:
                    frame = recv(0, copy=False)
                    if len(frames) <= MAX_FRAMES:
                        frames.append(frame.bytes)
                reply = self.handle_frames(frames)
                if reply is not None:
                    self._send(reply)
                continue
            if route == wake_id:
                while done:
                    self._send(self._finish(*done.popleft()))
                continue
            stats["requests"] += 1
            try:
                payload = answer([route], frame.bytes)
            except Exception as exc:  # a bug here must not kill the socket loop
                log.exception("command server %s: unexpected failure", self.process)
                stats["bad_frames"] += 1
                try:
                    payload = self._encode_reply(Reply.failure(None, "internal", repr(exc)))
                except Exception:
                    continue
            if payload is None:
                continue
            try:
                send(route, _MORE_NOBLOCK)
                send(payload, _NOBLOCK)
                stats["replies"] += 1
            except zmq.ZMQError:  # peer gone or its queue full: the client will time out
                stats["send_errors"] += 1

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> CommandServer:
        """Serve from a thread of its own; coroutine handlers run on `loop` when given (the
        daemon's loop, so they may touch its state), else on a loop the server starts."""
        if self._sock is None:
            raise RuntimeError("bind() the server before starting it")
        self._loop = loop
        if self._waker is None:
            wake_endpoint = f"inproc://ionpilot-cmd-wake-{secrets.token_hex(8)}"
            waker = self._context.socket(zmq.DEALER)
            waker.setsockopt(zmq.LINGER, 0)
            waker.setsockopt(zmq.ROUTING_ID, self._wake_id)
            waker.setsockopt(zmq.SNDHWM, 64)  # one pending wake-up is enough; more are dropped
            waker.bind(wake_endpoint)
            self._sock.connect(wake_endpoint)
            self._waker = waker
        self._running = True
        self._thread = threading.Thread(target=self._serve, name=f"cmd-{self.process}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, cancel running handlers, release the port."""
        if self._thread is not None:
            self._running = False
            self._wake()
            self._thread.join(5.0)
            self._thread = None
        self._running = False
        for future in list(self._futures):
            future.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._own_loop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._own_loop.join(5.0)
            self._loop.close()
            self._own_loop = None
        self._loop = None
        with self._wake_lock:
            if self._waker is not None:
                self._waker.close()
                self._waker = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> CommandServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
