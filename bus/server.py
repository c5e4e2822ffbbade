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
`max_in_flight` deferred requests run at once; beyond that the server answers `busy`. Each
has a deadline (`deferred_timeout`): one still running then is answered `timeout` and its
slot freed, and its handler's late result is dropped (one request, one reply), so handlers
stuck for good (a driver call that never returns) cannot leave the server `busy` for good.
Deadlines are checked on every wake-up and, once a request has been deferred, at least
every `_SWEEP_MS` (the socket's receive timeout): the inline path pays nothing for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgpack
import zmq

from ionpilot.bus.codec import (
    CONTAINER_HEADERS,
    DEEP_SCAN_AT,
    MAX_ID,
    MAX_NAME_CHARS,
    MAX_TTL_S,
    METHODS,
    SCALAR_TYPES,
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
from ionpilot.bus.security import USER_ID, ServerKeys, ZapHandler
from ionpilot.bus.settings import BusSettings, check_served_securely
from ionpilot.bus.wire import MAX_FRAMES, keep_alive
from ionpilot.core.clock import Clock, SystemClock

log = logging.getLogger(__name__)

Handler = Callable[[Request], Any]  # returns a wire value, or an awaitable of one
Authorize = Callable[[Request], None]  # raises BusError(forbidden) to refuse

MAX_ROUTE_FRAME_BYTES = 256
# Plain ints: pyzmq's flag enums make every `|` and `&` a Python-level call.
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
_SWEEP_MS = 1000  # longest the socket thread sleeps, deferred requests pending, between checks


class _Counts:
    """What the server has seen (slots: the socket loop bumps them on every request)."""

    __slots__ = (
        "bad_frames",
        "busy",
        "late_results",
        "replies",
        "requests",
        "send_errors",
        "timeouts",
        "unauthenticated",
    )

    def __init__(self) -> None:
        self.requests = self.replies = self.bad_frames = self.busy = self.send_errors = 0
        self.unauthenticated = 0  # messages with no authenticated user: dropped unanswered
        self.timeouts = 0  # deferred requests answered `timeout` at their deadline
        self.late_results = 0  # results of those that came in afterwards: dropped


@dataclass(frozen=True)
class _Entry:
    fn: Handler
    is_async: bool
    inline: bool
    deferred: bool = False  # called in the socket thread, returns a concurrent Future


@dataclass(frozen=True, slots=True)
class _Pending:
    """A deferred request awaiting its handler: where to answer, and until when."""

    route: list[bytes]
    rid: int
    deadline: float  # the server clock's `now()`: for work that has not started by then
    bound: float  # the server's own bound (`deferred_timeout`): for work that has started
    allowed_s: float  # the time it was given: the server's bound, or the sender's `ttl_s`


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
        keys: ServerKeys | None = None,
    ) -> None:
        """With `settings.security.curve` on (or `keys` given), the server takes CURVE
        clients only, those on the allow-list, and each may call what its role allows."""
        self.process = check_name(process)
        self._settings = settings
        self._context = context or zmq.Context.instance()
        self._clock = clock or SystemClock()
        self._authorize = authorize
        check_served_securely(settings)
        if keys is None and settings.security.curve:
            keys = ServerKeys.from_settings(settings.security)
        self._keys = keys
        self._roles = None if keys is None else keys.roles  # user -> methods it may call
        self._zap_domain = ""
        self._codec = Codec(settings.max_message_bytes)
        self._encode_reply = self._codec.encode_reply
        self._encode_result = self._codec.encode_result
        self._decode_request = self._codec.decode_request
        self._targets: dict[str, dict[str, _Entry]] = {}
        self._inline: dict[str, dict[str, Handler]] = {}  # the socket loop's fast path
        self._sock: zmq.Socket[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, settings.handler_threads), thread_name_prefix=f"cmd-{process}"
        )
        self._futures: dict[concurrent.futures.Future[Any], _Pending] = {}  # socket thread
        self._deferred_timeout = settings.deferred_timeout
        self._next_deadline = math.inf  # the earliest deadline in `_futures` (or later)
        self._done: deque[tuple[list[bytes], int, concurrent.futures.Future[Any]]] = deque()
        self._wake_lock = threading.Lock()  # the waker socket is used by one thread at a time
        self._waker: zmq.Socket[bytes] | None = None
        self._wake_id = b"\xffwake-" + secrets.token_bytes(16)  # no peer can guess it
        self._endpoint = ""
        self._running = False
        self._own_loop: threading.Thread | None = None
        self.in_flight = 0
        self._counts = _Counts()
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
        A deferred handler's worker calls `future.set_running_or_notify_cancel()` as the work
        starts (and does nothing if it returns False): work not started by the sender's
        deadline is cancelled and answered `timeout`; work started reports its outcome.
        """
        if method not in METHODS:
            raise ValueError(f"{method!r} is not a bus method; allowed: {sorted(METHODS)}")
        self.add_target(target)
        is_async = inspect.iscoroutinefunction(handler)
        if deferred and (is_async or inline):
            raise ValueError("a deferred handler is a plain function returning a Future")
        entry = _Entry(handler, is_async, inline and not is_async, deferred)
        self._targets[target][method] = entry
        if entry.inline:
            self._inline.setdefault(target, {})[method] = handler
        else:
            self._inline.get(target, {}).pop(method, None)

    @property
    def stats(self) -> dict[str, int]:
        """Counts of requests, replies, bad frames, `busy` refusals, failed sends, deferred
        requests answered `timeout` and results dropped because they came after it."""
        counts = self._counts
        return {name: getattr(counts, name) for name in _Counts.__slots__}

    def targets(self) -> dict[str, list[str]]:
        return {t: sorted(m) for t, m in sorted(self._targets.items())}

    def _ping(self, request: Request) -> Value:
        return {"process": self.process, "target": request.target, "t": self._clock.wall_ns()}

    def _list(self, request: Request) -> Value:
        return self.targets()

    # ------------------------------------------------------------------------------- frames

    def handle_frames(self, frames: list[bytes], user: str = "") -> list[bytes] | None:
        """Turn one received ROUTER message into reply frames, or None when the reply comes
        later (deferred handler) or cannot be routed (counted). `user` is the authenticated
        name of the sender (secured servers). Never raises."""
        self._counts.requests += 1
        if self._roles is not None and user not in self._roles:
            self._counts.unauthenticated += 1
            return None
        try:
            return self._handle(frames, user)
        except Exception as exc:  # a bug here must not kill the socket loop
            log.exception("command server %s: unexpected failure", self.process)
            self._counts.bad_frames += 1
            try:
                return [frames[0], self._encode_reply(Reply.failure(None, "internal", repr(exc)))]
            except Exception:
                return None

    def _handle(self, frames: list[bytes], user: str) -> list[bytes] | None:
        n = len(frames)
        if n < 2:
            self._counts.bad_frames += 1
            return None  # no identity to answer to
        if n > 2 and (n > MAX_FRAMES or any(len(f) > MAX_ROUTE_FRAME_BYTES for f in frames[1:-1])):
            self._counts.bad_frames += 1
            return [frames[0], self._fail(None, ErrorCode.BAD_REQUEST, "malformed envelope")]
        route = frames[:-1]
        payload = self._answer(route, frames[-1], user)
        return None if payload is None else [*route, payload]

    def _answer(self, route: list[bytes], data: bytes, user: str = "") -> bytes | None:
        """The reply payload to one request, or None when a deferred handler answers later
        (or, on a secured server, when the sender is not an authenticated user: no reply)."""
        if self._roles is not None and user not in self._roles:
            self._counts.unauthenticated += 1
            return None
        try:
            request = self._decode_request(data)
        except DecodeError as exc:
            self._counts.bad_frames += 1
            return self._fail(exc.request_id, ErrorCode.BAD_REQUEST, str(exc))
        request.user = user
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
        if self._roles is not None:
            allowed = self._roles.get(req.user)
            if allowed is None:  # not authenticated: nothing at all
                self._counts.unauthenticated += 1
                return None
            if req.method not in allowed:
                return self._fail(
                    rid, ErrorCode.FORBIDDEN, f"{req.user} may not {req.method} (role)"
                )
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
            self._counts.busy += 1
            return self._fail(rid, ErrorCode.BUSY, "too many requests in progress")
        given_s = self._deferred_timeout
        if req.ttl_s is not None and req.ttl_s < given_s:  # the sender stops waiting sooner
            given_s = req.ttl_s
        received = self._clock.now()
        deadline = received + given_s  # before the work can start
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
        bound = received + self._deferred_timeout
        self._futures[future] = _Pending(route, rid, deadline, bound, given_s)
        self._next_deadline = min(self._next_deadline, deadline)
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
    ) -> list[bytes] | None:
        """The reply to a finished handler; None when it was answered `timeout` already."""
        if self._futures.pop(future, None) is None:  # answered `timeout` already
            if not future.cancelled():
                self._counts.late_results += 1
            return None
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

    def _expire(self) -> None:
        """Answer `timeout` to every deferred request past its deadline and free its slot
        (socket thread). Costs a clock read and a comparison while none is due."""
        now = self._clock.now()
        if now < self._next_deadline:
            return
        earliest = math.inf
        for future, pending in list(self._futures.items()):
            # Work that has started (a set on its way to the instrument) reports its outcome,
            # never `timeout`, within the server's own bound; only work not started expires
            # at the sender's deadline, and is cancelled so that it never starts.
            started = future.running() or (future.done() and not future.cancelled())
            due = pending.bound if started else pending.deadline
            if due > now or future.done():  # a finished one is answered by `_tend` next
                earliest = min(earliest, due)
                continue
            if not started and not future.cancel() and not future.cancelled():
                earliest = min(earliest, pending.bound)  # it started just now
                continue
            del self._futures[future]
            self.in_flight -= 1
            self._counts.timeouts += 1
            allowed_s = self._deferred_timeout if started else pending.allowed_s
            message = (
                f"{self.process}: started, but no outcome within {allowed_s:g} s"
                if started
                else f"{self.process}: not started within {allowed_s:g} s; not applied"
            )
            self._send([*pending.route, self._fail(pending.rid, ErrorCode.TIMEOUT, message)])
        self._next_deadline = earliest

    def check_deadlines(self) -> None:
        """Have the socket thread check deadlines now (any thread; it also does so by itself
        at least every second while requests are pending, and on every completion)."""
        self._wake()

    # ------------------------------------------------------------------------------- socket

    def bind(self, address: str) -> str:
        """Bind the ROUTER (`tcp://127.0.0.1:0` picks a free port); returns the real endpoint."""
        if self._sock is None:
            sock = self._context.socket(zmq.ROUTER)
            sock.setsockopt(zmq.LINGER, 0)
            keep_alive(sock)
            sock.setsockopt(zmq.SNDHWM, self._settings.high_water_mark)
            sock.setsockopt(zmq.RCVHWM, self._settings.high_water_mark)
            sock.setsockopt(zmq.MAXMSGSIZE, hard_frame_limit(self._settings.max_message_bytes))
            if self._keys is not None:  # CURVE server; the ZAP handler checks the allow-list
                domain = f"ionpilot-cmd-{self.process}-{secrets.token_hex(4)}"
                try:
                    ZapHandler.register(self._context, domain, self._keys.allowed)
                    self._keys.apply(sock, domain)
                except Exception:
                    ZapHandler.unregister(self._context, domain)
                    sock.close()
                    raise
                self._zap_domain = domain
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
            self._counts.replies += 1
        except zmq.ZMQError:  # peer gone or its queue full: the client will time out
            self._counts.send_errors += 1

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
        "finished handlers are waiting" (or "stop").

        The common case (a well-formed request for an inline handler, from a DEALER) is
        written out here, with no call between the receive and the send but the decoder, the
        handler and the packer: measured, each Python call or attribute lookup on this path
        costs several times its hot-loop price, because caches are cold after the context
        switch that woke us. Anything else takes the general path (`_answer`/`_dispatch`),
        which checks and answers it exactly as `handle_frames` does: the fast path only
        accepts what the general decoder would accept unchanged."""
        sock = self._sock
        assert sock is not None
        recv = sock.recv
        send = super(zmq.Socket, sock).send  # the Cython send: pyzmq's wrapper only adds cost
        wake_id = self._wake_id
        counts = self._counts
        answer = self._answer
        dispatch = self._dispatch
        targets = self._targets
        inline = self._inline if self._authorize is None else {}  # authorize: general path
        unpackb = msgpack.unpackb  # only for frames that cannot nest past its stack (codec)
        container_headers, deep_at = CONTAINER_HEADERS, DEEP_SCAN_AT
        bad_request = ErrorCode.BAD_REQUEST
        pack = self._codec.packer.pack
        fail = self._fail
        max_bytes = self._settings.max_message_bytes
        secure = self._roles is not None
        fast_bytes = -1 if secure else max_bytes  # secured: every request takes the general path
        max_id = MAX_ID
        max_ttl = MAX_TTL_S
        numbers = (int, float)
        max_client = MAX_NAME_CHARS
        scalars = SCALAR_TYPES
        request_type = Request
        bus_error = BusError
        internal = ErrorCode.INTERNAL
        more_noblock, noblock = _MORE_NOBLOCK, _NOBLOCK
        tend = self._tend
        timed = False  # whether the receive times out (from the first deferred request on)
        while True:  # `close` stops us through the waker (or by ending the context)
            try:
                route = recv()  # blocking: a ROUTER message is the peer's identity + its frames
                frame = recv(0, False)  # always there: multipart messages arrive whole
            except zmq.Again:  # the receive timeout: nothing came, look at the deadlines
                if not tend():
                    return
                continue
            except zmq.ZMQError:  # the context is being destroyed under us
                return
            if frame.more:  # an envelope (REQ-style client) or garbage: the general path
                user = _user_of(frame) if secure else ""
                frames = [route, frame.bytes]
                while frame.more:
                    frame = recv(0, False)
                    if len(frames) <= MAX_FRAMES:
                        frames.append(frame.bytes)
                reply = self.handle_frames(frames, user)
                if reply is not None:
                    self._send(reply)
                elif not timed and self._futures:
                    timed = self._time_receives(sock)
                continue
            data = frame.bytes
            try:
                payload = None  # stays None: the general path answers
                if len(data) <= fast_bytes:
                    if len(data) - len(data.translate(None, container_headers)) >= deep_at:
                        obj = None  # could nest deep: the general decoder walks it first
                    else:
                        try:
                            obj = unpackb(data)
                        except Exception as exc:  # garbage (or a wake-up: an empty frame)
                            obj = None
                            if route != wake_id:  # answered here: decoded once, not twice
                                counts.requests += 1
                                counts.bad_frames += 1
                                payload = fail(
                                    None, bad_request, f"not msgpack: {type(exc).__name__}"
                                )
                    if type(obj) is dict:
                        try:
                            rid = obj["id"]
                            method = obj["method"]
                            target = obj["target"]
                            args = obj["args"]
                            client = obj["client"]
                        except KeyError:  # defaults or complaints: the general decoder
                            rid = None
                        ttl = obj.get("ttl_s")
                        if (
                            type(rid) is int
                            and 0 <= rid <= max_id
                            and type(method) is str
                            and type(target) is str
                            and type(args) is dict
                            and type(client) is str
                            and len(client) <= max_client
                            and (ttl is None or (type(ttl) in numbers and 0 < ttl <= max_ttl))
                        ):
                            for key, item in args.items():
                                if type(key) is not str or type(item) not in scalars:
                                    break  # nested or odd: the general decoder checks them
                            else:
                                # Registered names only, so their lengths are valid as well.
                                fns = inline.get(target)
                                fn = None if fns is None else fns.get(method)
                                name = args.get("name")
                                if type(name) is str and name[:1] == "_":
                                    pass  # refused by the general path
                                elif fn is not None:
                                    counts.requests += 1
                                    try:
                                        value = fn(
                                            request_type(
                                                rid, method, target, args, client, ttl_s=ttl
                                            )
                                        )
                                    except bus_error as exc:
                                        payload = fail(rid, exc.code, exc.message)
                                    except Exception as exc:
                                        payload = fail(rid, internal, _describe(exc))
                                    else:
                                        try:
                                            payload = pack({"id": rid, "ok": True, "value": value})
                                        except Exception:
                                            payload = b""
                                        if not payload or len(payload) > max_bytes:
                                            payload = self._result(rid, value)  # error, reset
                                elif method in targets.get(target, ()):
                                    counts.requests += 1
                                    if ttl is not None:
                                        ttl = float(ttl)
                                    payload = dispatch(
                                        [route],
                                        request_type(rid, method, target, args, client, ttl_s=ttl),
                                    )
                                    if payload is None:  # a deferred handler answers later
                                        if not timed:
                                            timed = self._time_receives(sock)
                                        continue
                if payload is None:
                    if route == wake_id:
                        if not tend():
                            return
                        continue
                    counts.requests += 1
                    payload = answer([route], data, _user_of(frame) if secure else "")
                    if payload is None:  # a deferred handler answers later (or nobody to)
                        if not timed and self._futures:
                            timed = self._time_receives(sock)
                        continue
            except Exception as exc:  # a bug here must not kill the socket loop
                log.exception("command server %s: unexpected failure", self.process)
                counts.bad_frames += 1
                try:
                    payload = self._encode_reply(Reply.failure(None, "internal", repr(exc)))
                except Exception:
                    continue
            try:
                send(route, more_noblock)
                send(payload, noblock)
                counts.replies += 1
            except zmq.ZMQError:  # peer gone or its queue full: the client will time out
                counts.send_errors += 1

    def _tend(self) -> bool:
        """On a wake-up or a receive timeout (socket thread): answer the finished handlers and
        the expired ones; False when the server is stopping instead."""
        if not self._running:
            return False
        done = self._done
        while done:
            self._reply_finished(done.popleft())
        self._expire()
        return True

    def _reply_finished(
        self, item: tuple[list[bytes], int, concurrent.futures.Future[Any]]
    ) -> None:
        reply = self._finish(*item)
        if reply is not None:
            self._send(reply)

    @staticmethod
    def _time_receives(sock: zmq.Socket[bytes]) -> bool:
        """From now on the socket thread wakes at least every `_SWEEP_MS` to check deadlines
        (once, from the first deferred request: a server that has none never times out)."""
        sock.setsockopt(zmq.RCVTIMEO, _SWEEP_MS)
        return True

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
        if self._zap_domain:
            ZapHandler.unregister(self._context, self._zap_domain)
            self._zap_domain = ""

    def __enter__(self) -> CommandServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _user_of(frame: zmq.Frame) -> str:
    """The authenticated name ZeroMQ attached to a message ("" if none: inproc, no ZAP)."""
    try:
        return str(frame.get(USER_ID))
    except zmq.ZMQError:
        return ""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
