"""Command clients: one DEALER socket, request ids, per-call timeouts, retries for reads only.

`ClientCore` is the non-blocking part shared by every flavour: scripts and the CLI use the
blocking `CommandClient`, the daemon `AsyncCommandClient`, the GUI `ionpilot.gui.busqt`.
The socket queues only on live connections (ZMQ_IMMEDIATE) and a timed-out request is taken
back from the outgoing queue, so a `set` that timed out is never delivered late.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import socket
import threading
from collections import deque
from collections.abc import Iterator
from time import monotonic as _monotonic
from typing import cast

import zmq

from ionpilot.bus.codec import (
    IDEMPOTENT_METHODS,
    MAX_TTL_S,
    SCALAR_TYPES,
    BusError,
    Codec,
    DecodeError,
    ErrorCode,
    Reply,
    Value,
    safe_unpackb,
)
from ionpilot.bus.hub import hard_frame_limit
from ionpilot.bus.security import ClientKeys
from ionpilot.bus.settings import BusSettings
from ionpilot.bus.wire import keep_alive

# Plain ints: with pyzmq's flag enums every `|` and `&` is a Python-level call.
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_SCALARS = SCALAR_TYPES
_unpackb = safe_unpackb  # msgpack defaults behind the depth guard: see ionpilot.bus.codec


def ttl_of(timeout: float | None) -> float | None:
    """The `ttl_s` a request carries for a caller waiting `timeout` s: none for a wait longer
    than a request may live, or no wait at all (the server's own bound then applies)."""
    if timeout is None or not 0 < timeout <= MAX_TTL_S:
        return None
    return timeout


def default_client_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ClientCore:
    """The socket side of a client, never blocking: encode, submit, service, cancel."""

    def __init__(
        self,
        settings: BusSettings,
        endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        name: str = "",
        keys: ClientKeys | None = None,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        if keys is None and settings.security.curve:  # the config's client identity
            keys = ClientKeys.from_settings(settings.security)
        self.name = name or default_client_name()
        self._codec = Codec(settings.max_message_bytes)
        self.packer = self._codec.packer
        self._decode_reply = self._codec.decode_reply
        self._encode_call = self._codec.encode_call
        sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        keep_alive(sock)
        sock.setsockopt(zmq.SNDHWM, settings.high_water_mark)
        sock.setsockopt(zmq.RCVHWM, settings.high_water_mark)
        sock.setsockopt(zmq.MAXMSGSIZE, hard_frame_limit(settings.max_message_bytes))
        if keys is not None:
            keys.apply(sock)
        sock.connect(endpoint)
        self.socket = sock
        self.send = super(zmq.Socket, sock).send  # the Cython send, without pyzmq's wrapper
        self.ids: Iterator[int] = itertools.count(random.SystemRandom().randrange(1, 2**40))
        self.outbox: deque[tuple[int, bytes]] = deque()  # requests waiting for a connection
        self.rcvtimeo = -1  # the socket's receive timeout (ms), kept here: getsockopt is slow
        self.bad_replies = 0

    @property
    def fd(self) -> int:
        fd = cast(int, self.socket.getsockopt(zmq.FD))
        return fd

    @property
    def has_outbox(self) -> bool:
        return bool(self.outbox)

    def attempts(self, method: str, retries: int | None) -> int:
        """1 + retries for idempotent reads; exactly 1 for anything that changes state."""
        if method not in IDEMPOTENT_METHODS:
            return 1
        return 1 + max(0, self.settings.request_retries if retries is None else retries)

    def new_request(
        self,
        target: str,
        method: str,
        args: dict[str, Value] | None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """A fresh id and the encoded request; `BusError(bad_request)` for unsendable args.
        `timeout`: how long the caller will wait, sent along as the request's `ttl_s`."""
        rid = next(self.ids)
        return rid, self.encode(rid, target, method, args, timeout)

    def encode(
        self,
        rid: int,
        target: str,
        method: str,
        args: dict[str, Value] | None,
        timeout: float | None = None,
    ) -> bytes:
        """The encoded request; `BusError(bad_request)` for arguments that cannot travel."""
        try:
            return self._encode_call(
                rid, method, target, {} if args is None else args, self.name, ttl_s=ttl_of(timeout)
            )
        except DecodeError as exc:
            raise BusError(ErrorCode.BAD_REQUEST, str(exc)) from None

    def set_rcvtimeo(self, wait_ms: int) -> None:
        self.socket.setsockopt(zmq.RCVTIMEO, wait_ms)
        self.rcvtimeo = wait_ms

    def decode(self, data: bytes) -> Reply | None:
        """A received reply, or None for (counted) garbage."""
        try:
            return self._decode_reply(data)
        except DecodeError:
            self.bad_replies += 1
            return None

    def submit(self, rid: int, payload: bytes) -> None:
        """Send now, or queue until the connection is up (bounded; `busy` when full)."""
        if not self.outbox:
            try:
                self.send(payload, _NOBLOCK)
                return
            except zmq.Again:
                pass
        if len(self.outbox) >= self.settings.high_water_mark:
            raise BusError(ErrorCode.BUSY, "too many requests waiting for a connection")
        self.outbox.append((rid, payload))

    def cancel(self, rid: int) -> None:
        """Take a request back if it has not left yet."""
        if any(r == rid for r, _ in self.outbox):
            self.outbox = deque(item for item in self.outbox if item[0] != rid)

    def service(self) -> list[Reply]:
        """Flush queued requests and read every reply available, without blocking."""
        sock = self.socket
        replies: list[Reply] = []
        while True:
            events = cast(int, sock.getsockopt(zmq.EVENTS))
            progressed = False
            if events & _POLLOUT and self.outbox:
                try:
                    sock.send(self.outbox[0][1], _NOBLOCK)
                    self.outbox.popleft()
                    progressed = True
                except zmq.Again:
                    pass
            if events & _POLLIN:
                reply = self.read_reply()
                if reply is not None:
                    replies.append(reply)
                progressed = True
            if not progressed:
                return replies

    def read_reply(self, wait_ms: int = 0) -> Reply | None:
        """Read one message, waiting up to `wait_ms`; None on timeout or (counted) garbage."""
        sock = self.socket
        try:  # one frame: a reply is one; the frames of a longer message count one by one
            if wait_ms <= 0:
                data = sock.recv(_NOBLOCK)
            else:
                if wait_ms != self.rcvtimeo:
                    self.set_rcvtimeo(wait_ms)
                data = sock.recv()
        except zmq.Again:
            return None
        return self.decode(data)

    def timeout_reply(self, rid: int, timeout: float, attempts: int) -> Reply:
        return Reply.failure(
            rid,
            ErrorCode.TIMEOUT,
            f"no reply from {self.endpoint} within {timeout:g} s ({attempts} attempt(s))",
        )

    def close(self) -> None:
        self.socket.close()


class CommandClient:
    """Blocking client for scripts and the CLI (thread-safe: one call at a time)."""

    def __init__(
        self,
        settings: BusSettings,
        endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        name: str = "",
        keys: ClientKeys | None = None,
    ) -> None:
        """`keys`: a CURVE identity other than the config's `client_key_file`."""
        self._core = core = ClientCore(settings, endpoint, context=context, name=name, keys=keys)
        self._settings = settings
        self._lock = threading.Lock()
        # What `request` uses on every call, looked up once.
        self._timeout = settings.request_timeout
        self._max_bytes = settings.max_message_bytes
        self._name = core.name
        self._pack = core.packer.pack
        self._send = core.send
        self._recv = core.socket.recv
        self._timeout_s = math.nan  # the call timeout the socket's receive timeout is set for

    @property
    def bad_replies(self) -> int:
        return self._core.bad_replies

    def request(
        self,
        target: str,
        method: str,
        args: dict[str, Value] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Reply:
        """Send one command and wait for its reply; failures come back as a `Reply`.

        The common case (flat arguments, connected, the reply arrives in time) is written
        out here, like the server's socket loop: pack, send, one blocking receive with the
        timeout, check the reply. Everything else goes through `ClientCore`'s general steps,
        which check and report exactly the same way."""
        if timeout is None:
            timeout = self._timeout
        if args is None:
            args = {}
        core = self._core
        with self._lock:
            start = _monotonic()
            rid = next(core.ids)
            payload = b""
            if type(args) is dict:
                for key, item in args.items():
                    if type(key) is not str or type(item) not in _SCALARS:
                        break  # nested or odd args: `new_request` checks them
                else:
                    message: dict[str, Value] = {
                        "id": rid,
                        "method": method,
                        "target": target,
                        "args": args,
                        "client": self._name,
                    }
                    ttl = ttl_of(timeout)
                    if ttl is not None:
                        message["ttl_s"] = ttl
                    try:
                        payload = self._pack(message)
                    except Exception:
                        payload = b""
            if not payload or len(payload) > self._max_bytes:
                try:  # the general encoder: checks deeply and says what is wrong
                    payload = core.encode(rid, target, method, args, timeout)
                except BusError as exc:
                    return Reply.failure(None, exc.code, exc.message)
            sent = False
            if not core.outbox:
                try:
                    self._send(payload, _NOBLOCK)
                    sent = True
                except zmq.Again:  # not connected yet: the general path queues it
                    pass
            if sent:
                if timeout != self._timeout_s:  # the receive timeout follows the call's
                    wait_ms = int(timeout * 1000 + 0.999)
                    core.set_rcvtimeo(wait_ms if wait_ms >= 1 else 1)  # -1 means "forever"
                    self._timeout_s = timeout
                try:
                    data = self._recv()
                except zmq.Again:
                    data = None
                if data is not None and len(data) <= self._max_bytes:
                    try:
                        obj = _unpackb(data)
                        if (
                            obj["ok"] is True
                            and obj["id"] == rid
                            and type(obj["id"]) is int
                            and type(value := obj["value"]) in _SCALARS
                        ):
                            return Reply(rid, True, value)
                    except Exception:  # garbage, or not a plain success: the general path
                        pass
                if data is not None:  # an error, an old reply, or garbage: the general path
                    reply = core.decode(data)
                    if reply is not None and reply.id == rid:
                        return reply
            return self._wait(
                rid,
                payload,
                method=method,
                timeout=timeout,
                retries=retries,
                start=start,
                sent=sent,
            )

    def _wait(
        self,
        rid: int,
        payload: bytes,
        *,
        method: str,
        timeout: float,
        retries: int | None,
        start: float,
        sent: bool,
    ) -> Reply:
        """The general path of `request` (lock held): queue while not connected, skip old
        replies and garbage, retry idempotent reads, give up with `timeout`."""
        core = self._core
        sock = core.socket
        attempts = core.attempts(method, retries)
        self._timeout_s = math.nan  # `read_reply` sets the receive timeout its own way
        for attempt in range(attempts):
            if attempt or not sent:
                try:
                    core.submit(rid, payload)
                except BusError as exc:
                    return Reply.failure(rid, exc.code, exc.message)
                start = _monotonic()
            deadline = start + timeout
            while True:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    break
                wait_ms = max(1, int(remaining * 1000 + 0.999))
                if core.has_outbox:  # not connected yet: wait for either direction
                    sock.poll(wait_ms, zmq.POLLIN | zmq.POLLOUT)
                    for reply in core.service():
                        if reply.id == rid:
                            return reply
                else:  # a blocking receive with a timeout: cheaper than poll + receive
                    answer = core.read_reply(wait_ms)
                    if answer is not None and answer.id == rid:
                        return answer
            core.cancel(rid)
        return core.timeout_reply(rid, timeout, attempts)

    def call(
        self,
        target: str,
        method: str,
        args: dict[str, Value] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Value:
        """Like `request`, but returns the value or raises `BusError`."""
        return self.request(target, method, args, timeout=timeout, retries=retries).unwrap()

    def close(self) -> None:
        self._core.close()

    def __enter__(self) -> CommandClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCommandClient:
    """asyncio client: many concurrent calls from many tasks over one socket, never blocking.

    Bound to the loop of its first call; use and close it from that loop only.
    """

    def __init__(
        self,
        settings: BusSettings,
        endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        name: str = "",
        keys: ClientKeys | None = None,
    ) -> None:
        """`keys`: a CURVE identity other than the config's `client_key_file`."""
        self._core = ClientCore(settings, endpoint, context=context, name=name, keys=keys)
        self._settings = settings
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _attach(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._core.fd, self._service)
        return self._loop

    def _service(self) -> None:
        for reply in self._core.service():
            if reply.id is None:
                continue
            future = self._pending.get(reply.id)
            if future is not None and not future.done():
                future.set_result(reply)

    async def request(
        self,
        target: str,
        method: str,
        args: dict[str, Value] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Reply:
        """Send one command and await its reply; failures come back as a `Reply`."""
        loop = self._attach()
        core = self._core
        timeout = self._settings.request_timeout if timeout is None else timeout
        attempts = core.attempts(method, retries)
        try:
            rid, payload = core.new_request(target, method, args, timeout)
        except BusError as exc:
            return Reply.failure(None, exc.code, exc.message)
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending[rid] = future
        try:
            for _ in range(attempts):
                try:
                    core.submit(rid, payload)
                except BusError as exc:
                    return Reply.failure(rid, exc.code, exc.message)
                self._service()  # edge-triggered FD: look now, a send may hide a signal
                try:
                    async with asyncio.timeout(timeout):
                        return await asyncio.shield(future)
                except TimeoutError:
                    core.cancel(rid)
            return core.timeout_reply(rid, timeout, attempts)
        finally:
            self._pending.pop(rid, None)

    async def call(
        self,
        target: str,
        method: str,
        args: dict[str, Value] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Value:
        """Like `request`, but returns the value or raises `BusError`."""
        reply = await self.request(target, method, args, timeout=timeout, retries=retries)
        return reply.unwrap()

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._core.fd)
        for future in self._pending.values():
            future.cancel()
        self._core.close()
