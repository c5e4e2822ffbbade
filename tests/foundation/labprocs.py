"""What the real-process tests share: the default lab moved onto free loopback ports."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from ionpilot.config import load_config
from ionpilot.drivers.hardware import MODELS

ROOT = Path(__file__).resolve().parents[2]
SIM_LAB = ROOT / "configs" / "sim-lab.yaml"
ADDRESS_FORMS = {
    "visa-socket": "TCPIP0::127.0.0.1::{}::SOCKET",
    "telnet": "TCPIP0::127.0.0.1::{}::SOCKET",
    "serial-socket": "socket://127.0.0.1:{}",
    "xmlrpc": "http://127.0.0.1:{}/RPC2",
    "tcp-json": "tcp://127.0.0.1:{}",
}


def free_ports(n: int) -> list[int]:
    """n distinct ports free right now (held open together while they are chosen)."""
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def lab_on_free_ports(tmp: Path, name: str, extra: Sequence[str] = ()) -> Path:
    """A lab file including the default one with every port moved to a free one, its data in
    tmp, plus `extra` top-level YAML lines; returns its path."""
    config = load_config(SIM_LAB)
    ports = iter(free_ports(2 + len(config.processes) + len(config.instruments)))
    lines = [
        f"include: {SIM_LAB}",
        f"lab: {{name: {name}, data_dir: {tmp / 'var'}}}",
        f"bus: {{publish_port: {next(ports)}, subscribe_port: {next(ports)}}}",
        *extra,
        "processes:",
    ]
    lines += [f"  {process}: {{command_port: {next(ports)}}}" for process in config.processes]
    lines.append("instruments:")
    for instrument, inst in config.instruments.items():
        address = ADDRESS_FORMS[MODELS[inst.model].transport].format(next(ports))
        lines.append(f"  {instrument}: {{address: '{address}'}}")
    path = tmp / "lab.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
