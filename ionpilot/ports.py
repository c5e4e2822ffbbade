"""Before a lab starts: are its ports free? A port another process listens on is named at once,
with that process when this user may see it (Linux /proc), instead of a child failing to bind
and the supervisor waiting for a ready line that never comes."""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ionpilot.config import LabConfig, host_port

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class PortClaim:
    """A port the lab will listen on, and the lab-file key that says so."""

    host: str
    port: int
    key: str


def lab_ports(config: LabConfig) -> list[PortClaim]:
    """Every port `ionpilot up` binds: the hub's two, each process's command port, and (when the
    lab simulates its instruments) every loopback instrument address the simulated lab serves."""
    bus = config.bus
    claims = [
        PortClaim(bus.host, bus.publish_port, "bus.publish_port"),
        PortClaim(bus.host, bus.subscribe_port, "bus.subscribe_port"),
    ]
    claims += [
        PortClaim(bus.host, p.command_port, f"processes.{name}.command_port")
        for name, p in config.processes.items()
    ]
    if "sim" in config.processes:
        for name, inst in config.instruments.items():
            where = host_port(inst.address)
            if inst.enabled and where is not None and where[0] in LOOPBACK:
                claims.append(PortClaim(where[0], where[1], f"instruments.{name}.address"))
    return [c for c in claims if c.port != 0]


def is_taken(host: str, port: int) -> bool:
    """True when a bind like ZeroMQ's (SO_REUSEADDR, so TIME_WAIT is no obstacle) fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def listener_of(port: int) -> str | None:
    """`pid N (command line)` of the process listening on `port`, else of one whose connection
    uses it as its local port (moved ports may fall in the ephemeral range), when /proc shows
    it."""
    listening, connected = _socket_inodes(port)
    owner = _process_of(listening) if listening else None
    if owner is None and connected:
        found = _process_of(connected)
        owner = f"a connection of {found}" if found else "a connection"
    return owner


def _socket_inodes(port: int) -> tuple[set[str], set[str]]:
    """Inodes of the TCP sockets whose local port is `port`: (listening, in another state)."""
    listening: set[str] = set()
    other: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                (listening if fields[3] == "0A" else other).add(fields[9])
    return listening, other - {"0"}  # inode 0: TIME_WAIT, owned by nobody


def _process_of(inodes: set[str]) -> str | None:
    """`pid N (command line)` of a process holding one of these socket inodes."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in fds):
                continue
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone, or not ours to see
            continue
        command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
        return f"pid {pid} ({shorten(command)})"
    return None


def shorten(command: str, limit: int = 80) -> str:
    """A command line as a person reads it: the interpreter path dropped, at most `limit`."""
    parts = command.split()
    if len(parts) > 1 and "python" in Path(parts[0]).name:
        parts = parts[1:]
    if parts[:2] == ["-m", "ionpilot.cli"]:  # how `ionpilot up` starts its children
        parts = ["ionpilot", *parts[2:]]
    if parts:
        parts[0] = Path(parts[0]).name
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_taken(config: LabConfig) -> str | None:
    """One line naming the first taken port and, if knowable, by what; None when all are free."""
    for claim in lab_ports(config):
        if is_taken(claim.host, claim.port):
            owner = listener_of(claim.port)
            by = f"taken by {owner}" if owner else "taken by another process"
            return (
                f"port {claim.port} on {claim.host} ({claim.key}) is {by}; is this lab already "
                "up? Stop it, or give this copy other ports in its lab file"
            )
    return None
