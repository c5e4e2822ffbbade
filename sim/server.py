"""Socket plumbing for the simulated instruments: one asyncio server per instrument on
127.0.0.1, framing by the protocol's separator, faults (hang, disconnect, garbage) applied here,
and replies held back until the world's clock has reached the end of a timed measurement."""

from __future__ import annotations

import asyncio
import contextlib

from .instruments.base import Protocol
from .world import World

MAX_REQUEST_BYTES = 1 << 20
HANG_POLL_S = 0.05


def incomplete_block(data: bytes) -> int:
    """Bytes still missing from the last IEEE 488.2 definite-length block in `data` (0 when
    every block is complete; quoted strings are skipped)."""
    i, quote = 0, 0
    while i < len(data):
        c = data[i]
        if quote:
            quote = 0 if c == quote else quote
        elif c in b"\"'":
            quote = c
        elif c == ord("#") and i + 1 < len(data) and 0x31 <= data[i + 1] <= 0x39:
            digits = data[i + 1] - 0x30
            length_text = data[i + 2 : i + 2 + digits]
            if len(length_text) < digits:
                return digits - len(length_text)
            if not length_text.isdigit():
                return 0  # not a block: the parser reports it
            end = i + 2 + digits + int(length_text)
            if end > len(data):
                return end - len(data)
            i = end
            continue
        i += 1
    return 0


async def _complete_blocks(reader: asyncio.StreamReader, raw: bytes, sep: bytes) -> bytes:
    """Read on until every block in the request is whole and the request ends in `sep`."""
    while True:
        missing = incomplete_block(raw[: -len(sep)])
        if not missing:
            return raw
        if len(raw) + missing > MAX_REQUEST_BYTES:
            raise asyncio.LimitOverrunError("request too long", len(raw))
        raw += await reader.readexactly(max(0, missing - len(sep)))
        raw += await reader.readuntil(sep)


class PortServer:
    """One TCP port of one simulated instrument (0 = any free port): bound by `start`, closed
    with every connection by `stop`, and both by the instrument's disconnect and restore
    faults. Subclasses serve a connection (`_client`)."""

    def __init__(self, world: World, port: int, host: str = "127.0.0.1"):
        self.world = world
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def name(self) -> str:
        """The instrument's name, as faults target it."""
        raise NotImplementedError

    async def _bind(self, port: int) -> int:
        self._server = await asyncio.start_server(
            self._client, self.host, port, limit=MAX_REQUEST_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def start(self) -> int:
        return await self._bind(self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def on_fault(self, kind: str, target: str | None) -> None:
        if target != self.name:
            return
        if kind == "instrument_disconnect":
            await self.stop()
        elif kind == "restore" and self._server is None:
            await self.start()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class InstrumentServer(PortServer):
    """Serves one protocol object on one TCP port (0 = any free port)."""

    def __init__(self, protocol: Protocol, world: World, port: int, host: str = "127.0.0.1"):
        super().__init__(world, port, host)
        self.protocol = protocol
        self._busy = asyncio.Lock()  # one request at a time per instrument, in arrival order

    @property
    def name(self) -> str:
        return self.protocol.name

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limit = self.protocol.max_clients
        if limit is not None and len(self._writers) >= limit:
            writer.close()
            return
        self._writers.add(writer)
        try:
            if self.protocol.transport == "http":
                await self._serve_http(reader, writer)
            else:
                await self._serve_lines(reader, writer, self.protocol.session())
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_lines(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Protocol
    ) -> None:
        banner = session.banner()
        if banner:
            writer.write(banner)
            await writer.drain()
        sep = session.separator
        while True:
            try:
                raw = await reader.readuntil(sep)
                if self.protocol.binary_blocks:
                    raw = await _complete_blocks(reader, raw, sep)
            except asyncio.IncompleteReadError:
                return  # a half-written request is never handled
            encoding = "latin-1" if self.protocol.binary_blocks else "utf-8"
            line = raw[: -len(sep)].decode(encoding, errors="replace").rstrip("\r")
            if sep == b"\r":
                line = line.lstrip("\n")
            reply = await self._answer(line, session)
            if reply is not None:
                writer.write(reply)
                await writer.drain()

    async def _answer(self, request: str, session: Protocol | None = None) -> bytes | None:
        """Apply the instrument's fault state, run the request, wait for world time."""
        protocol = session if session is not None else self.protocol
        async with self._busy:
            fault = self.world.instrument_fault(self.name)
            if fault == "hang":
                return None
            # Wait for this request's own measurement only: a long run on another instrument
            # puts the world ahead of the clock, but must not hold this instrument's replies.
            ahead = self.world.ready_in()
            reply = protocol.handle(request)
            delay = self.world.ready_in() - ahead
            if delay > 0:
                await asyncio.sleep(delay)
            if reply is not None and self.world.instrument_fault(self.name) == "garbage":
                return protocol.garbage()
            if self.world.instrument_fault(self.name) == "hang":
                return None
            return reply

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Just enough HTTP/1.1 for xmlrpc.client: POST with Content-Length, then close."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for header in head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = header.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        if length > MAX_REQUEST_BYTES:
            return
        body = await reader.readexactly(length)
        while self.world.instrument_fault(self.name) == "hang":
            await asyncio.sleep(HANG_POLL_S)
        reply = await self._answer(body.decode("utf-8", errors="replace"))
        if reply is None:
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n"
            + f"Content-Length: {len(reply)}\r\n\r\n".encode("ascii")
            + reply
        )
        await writer.drain()
