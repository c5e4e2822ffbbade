"""What the real-process tests share: the default lab moved onto free loopback ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

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


class UpRun:
    """`ionpilot up --config LAB --duration S` as a child of the test: its output collected, the
    pid of every process it started noted (restarts too), so a test can check that none is left.
    A context manager: leaving it stops `up` (SIGTERM, which stops its children) and waits."""

    def __init__(self, lab: Path, duration_s: float, cwd: Path, *options: str) -> None:
        argv = [sys.executable, "-m", "ionpilot.cli", "up", "--config", str(lab)]
        argv += ["--duration", f"{duration_s:g}", *options]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
        )
        self.output: list[str] = []
        self.pids: dict[str, list[int]] = {}
        self._reader = threading.Thread(target=self._read, name="up-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("[") and "] started (pid " in line:
                name = line[1 : line.index("]")]
                pid = int(line.rsplit("pid ", 1)[1].rstrip(")\n"))
                self.pids.setdefault(name, []).append(pid)

    def tail(self, lines: int = 40) -> str:
        return "".join(self.output[-lines:])

    def check(self) -> None:
        """Raise if `up` has ended (not AssertionError: pytest-qt's waitUntil would retry that)."""
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"ionpilot up ended with {code}:\n{self.tail()}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM `up` (it stops its children in reverse order) and wait; its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(timeout_s)
        self._reader.join(5.0)
        return code

    def left_behind(self) -> list[str]:
        """`up` itself and every child it started that still runs (empty when all ended)."""
        left = [f"up pid {self.proc.pid}"] if alive(self.proc.pid) else []
        for name, numbers in self.pids.items():
            left += [f"{name} pid {pid}" for pid in numbers if alive(pid)]
        return left

    def __enter__(self) -> UpRun:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:  # never leave it running
            self.proc.kill()
            self.proc.wait(10.0)
