"""A tiny loopback server that replays a script of canned replies: protocol fixtures for tests.

Not the simulated lab: it knows nothing of physics, it checks that a driver sends exactly the
expected requests, in order, and answers each with the scripted bytes. It binds 127.0.0.1 on a
port chosen by the OS, serves one connection at a time (serially), and stops by itself when
closed. Mismatches are recorded (`failures`) and answered with nothing, so the driver times out.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Matcher = bytes | Callable[[bytes], bool]
Reply = bytes | Callable[[bytes], bytes]


@dataclass
class Exchange:
    """One scripted step: a request (exact bytes, terminator excluded, or a predicate) and the
    reply bytes (or a function of the request) sent back verbatim."""

    request: Matcher
    reply: Reply


@dataclass
class ReplayServer:
    """Serve `script` to the connections made to `port`, in order."""

    script: Sequence[Exchange]
    terminator: bytes = b"\n"
    greeting: bytes = b""
    failures: list[str] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._step = 0
        self._thread = threading.Thread(target=self._serve, name="replay-server", daemon=True)
        self._thread.start()

    @property
    def remaining(self) -> int:
        """Scripted exchanges not yet used."""
        return len(self.script) - self._step

    def close(self) -> None:
        """Stop serving and join the thread."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> ReplayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(0.2)
                if self.greeting:
                    conn.sendall(self.greeting)
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        while not self._stop.is_set():
            while self.terminator in buffer:
                request, _, buffer = buffer.partition(self.terminator)
                self.received.append(request)
                conn.sendall(self._answer(request))
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk

    def _answer(self, request: bytes) -> bytes:
        if self._step >= len(self.script):
            self.failures.append(f"unexpected extra request {request!r}")
            return b""
        step = self.script[self._step]
        expected = step.request
        ok = expected(request) if callable(expected) else request == expected
        if not ok:
            self.failures.append(f"step {self._step}: got {request!r}, expected {expected!r}")
            return b""
        self._step += 1
        return step.reply(request) if callable(step.reply) else step.reply
