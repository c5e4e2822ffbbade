"""Thorlabs SC10 shutter controller: serial framing (CR, echo, `> ` prompt) over a TCP socket
for pyserial's socket:// (PROTOCOLS.md §7)."""

from __future__ import annotations

from ..world import World
from .base import GARBAGE, Protocol

IDN = "THORLABS SC10 VERSION 1.07"
MODES = (1, 2, 3, 4, 5)


class Sc10(Protocol):
    separator = b"\r"
    max_clients = 1  # a serial port

    def __init__(self, world: World, name: str, shutter: str) -> None:
        super().__init__(world, name)
        self.shutter = shutter
        self.mode = 1

    def garbage(self) -> bytes:
        return f"{GARBAGE}\r> ".encode("latin-1")

    def handle(self, line: str) -> bytes | None:
        command = line.strip("\n").strip()
        reply = self._evaluate(command)
        body = command + "\r" + (reply + "\r" if reply is not None else "") + "> "
        return body.encode("ascii", errors="replace")

    def _evaluate(self, command: str) -> str | None:
        if command == "id?":
            return IDN
        if command == "ens?":
            return "1" if self.world.shutters[self.shutter] else "0"
        if command == "ens":
            self.world.set_shutter(self.shutter, not self.world.shutters[self.shutter])
            return None
        if command == "mode?":
            return str(self.mode)
        if command.startswith("mode="):
            try:
                mode = int(command[5:])
            except ValueError:
                return "CMD_ARG_INVALID"
            if mode not in MODES:
                return "CMD_ARG_INVALID"
            self.mode = mode
            return None
        return "CMD_NOT_DEFINED"
