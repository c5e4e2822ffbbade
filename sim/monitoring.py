"""Socket plumbing of a DLC pro's monitoring line (real port 1999): requests arrive as lines,
updates of subscribed parameters are pushed when they change, at most once per subscription
interval. Faults act as on the command line: a hung instrument stays silent, a disconnected
one closes the port."""

from __future__ import annotations

import asyncio
import contextlib
import time

from .instruments.dlc_pro import DlcPro, Monitor
from .server import PortServer
from .world import World

PUSH_PERIOD_S = 0.02  # how often subscriptions are looked at (each has its own interval)


class MonitoringServer(PortServer):
    """Serves the monitoring line of one DLC pro on one TCP port (0 = any free port)."""

    def __init__(self, device: DlcPro, world: World, port: int, host: str = "127.0.0.1"):
        super().__init__(world, port, host)
        self.device = device

    @property
    def name(self) -> str:
        return self.device.name

    async def start(self) -> int:
        """Bind the configured port, or any free one if it is taken (the command line is what
        the lab needs; the monitoring port actually bound is in `port`)."""
        try:
            return await self._bind(self.port)
        except OSError:
            return await self._bind(0)

    def _silent(self) -> bool:
        return self.world.instrument_fault(self.name) == "hang"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        monitor = Monitor(self.device)
        pusher = asyncio.create_task(self._push(monitor, writer))
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return  # a half-written request is dropped with the connection
                if self._silent():
                    continue
                lines = monitor.handle(raw.decode("utf-8", errors="replace"))
                await self._send(writer, lines)
        except (ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pusher
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _push(self, monitor: Monitor, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(PUSH_PERIOD_S)
            if monitor.subscriptions and not self._silent():
                await self._send(writer, monitor.updates(time.monotonic()))

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, lines: list[str]) -> None:
        if lines:
            writer.write("".join(line + "\n" for line in lines).encode("utf-8"))
            await writer.drain()
