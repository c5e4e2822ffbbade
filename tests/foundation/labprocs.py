"""What the lab tests share: the default lab moved onto free loopback ports for real processes
(`lab_on_free_ports`, `UpRun`), and the same lab live in the test's own process (`live_lab`: the
simulated lab, a bus hub and a driver host). Other test folders put this folder on sys.path in
their conftest.py to import it."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import pyvisa

from ionpilot.access import create_lab_keys
from ionpilot.bus.client import CommandClient
from ionpilot.bus.hub import Hub
from ionpilot.bus.settings import BusSecurity, BusSettings
from ionpilot.config import LabConfig, load_config
from ionpilot.drivers.hardware import MODELS
from ionpilot.drivers.host import DriverHost, InstrumentSpec, open_spec
from ionpilot.sim.clock import WorldClock
from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import SimSettings

ROOT = Path(__file__).resolve().parents[2]
SIM_LAB = ROOT / "configs" / "sim-lab.yaml"
ADDRESS_FORMS = {
    "visa-socket": "TCPIP0::127.0.0.1::{}::SOCKET",
    "telnet": "TCPIP0::127.0.0.1::{}::SOCKET",
    "serial-socket": "socket://127.0.0.1:{}",
    "xmlrpc": "http://127.0.0.1:{}/RPC2",
    "tcp-json": "tcp://127.0.0.1:{}",
}


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll `predicate` until it gives something true, and return that; AssertionError after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


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


def lab_on_free_ports(
    tmp: Path,
    name: str,
    extra: Sequence[str] = (),
    *,
    secured: bool = True,
    base: Path = SIM_LAB,
) -> Path:
    """A lab file including `base` (the default lab) with every port moved to a free one, its
    data in tmp, plus `extra` top-level YAML lines; returns its path. `secured=False` turns the
    bus's CURVE off explicitly (a test of something else that publishes topics no process
    owns)."""
    config = load_config(base)
    ports = iter(free_ports(2 + len(config.processes) + len(config.instruments)))
    lines = [
        f"include: {base.resolve()}",
        f"lab: {{name: {name}, data_dir: {tmp / 'var'}}}",
        f"bus: {{publish_port: {next(ports)}, subscribe_port: {next(ports)}"
        + ("}" if secured else ", security: {curve: false}}"),
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
    create_lab_keys(load_config(path))  # as `ionpilot up` would: test clients use them too
    return path


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def command_client(config: LabConfig, process: str) -> CommandClient:
    """A command client of the lab's `process`, on its loopback command port."""
    return CommandClient(config.bus, f"tcp://127.0.0.1:{config.processes[process].command_port}")


def daemon_status(daemon: CommandClient) -> dict[str, Any]:
    """The servo daemon's status; {} while it does not answer (not up yet)."""
    try:
        reply = daemon.call("daemon", "status", {}, timeout=5.0)
    except Exception:  # not up yet
        return {}
    return reply if isinstance(reply, dict) else {}


def locked_and_idle(status: Mapping[str, Any]) -> bool:
    """The clock locked, no recovery under way, both laser locks locked."""
    return (
        status.get("state") == "locked"
        and status.get("recovering") == ""
        and status.get("aux_locks") == {"cooling": "locked", "repump": "locked"}
    )


def inject_fault(lab: Path, *fault: str) -> subprocess.CompletedProcess[str]:
    """`ionpilot sim --config LAB fault ...` (as an operator would), its output captured."""
    argv = [sys.executable, "-m", "ionpilot.cli", "sim", "--config", str(lab), "fault", *fault]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


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

    def text(self) -> str:
        """All `up` has printed so far."""
        return "".join(self.output)

    def wait_until(self, predicate: Callable[[], bool], seconds: float, step: float) -> bool:
        """Poll `predicate` every `step` s for up to `seconds`; its last answer. Raises (see
        `check`) as soon as `up` has ended."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check()
            if predicate():
                return True
            time.sleep(step)
        return predicate()

    def check(self) -> None:
        """Raise if `up` has ended (not AssertionError: pytest-qt's waitUntil would retry that)."""
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"ionpilot up ended with {code}:\n{self.tail()}")

    def wait(self, timeout_s: float) -> int:
        """Wait for `up` to end by itself (its --duration); its exit code, all output read."""
        code = self.proc.wait(timeout_s)
        self._reader.join(5.0)
        return code

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


# --- the lab live in this process: simulated instruments, hub, driver host ----------------


def lab_config() -> LabConfig:
    """configs/sim-lab.yaml, loaded anew (each caller may replace parts of it), with the bus
    plain: in-process labs run every part under one identity, which the lab's own keys (and
    their topic owners) would not allow."""
    config = load_config(SIM_LAB)
    return dataclasses.replace(
        config, bus=dataclasses.replace(config.bus, security=BusSecurity(curve=False))
    )


def lab_instruments(
    config: LabConfig, names: Sequence[str] | None = None
) -> dict[str, tuple[str, str]]:
    """{name: (model, address)} of the lab's instruments `names` (all of them by default), as
    the simulated lab takes them."""
    chosen = list(config.instruments) if names is None else names
    return {n: (config.instruments[n].model, config.instruments[n].address) for n in chosen}


def bus_of(base: BusSettings, hub: Hub) -> BusSettings:
    """`base` re-pointed at the ports a running hub really bound."""
    return dataclasses.replace(
        base,
        publish_port=int(hub.publish_endpoint.rsplit(":", 1)[1]),
        subscribe_port=int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
    )


@contextmanager
def hub_on_free_ports(base: BusSettings) -> Iterator[tuple[Hub, BusSettings]]:
    """A hub with `base`'s settings on free ports, and `base` re-pointed at them."""
    with Hub(dataclasses.replace(base, publish_port=0, subscribe_port=0)) as hub:
        yield hub, bus_of(base, hub)


def wait_connected(host: DriverHost, timeout_s: float) -> None:
    """Until every instrument of `host` is connected; AssertionError (with each instrument's
    last error) after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while any(w.state != "connected" for w in host.workers.values()):
        assert time.monotonic() < deadline, {n: w.last_error for n, w in host.workers.items()}
        time.sleep(0.01)


@contextmanager
def driver_host(
    specs: list[InstrumentSpec],
    bus: BusSettings,
    *,
    prepare: Callable[[DriverHost], None] | None = None,
    connected_within_s: float | None = None,
) -> Iterator[DriverHost]:
    """A driver host "drivers" for `specs` on a free loopback command port, the real drivers
    opened (`open_spec`). `prepare` sees it before it starts; with `connected_within_s`, every
    instrument is connected before it is handed over."""
    host = DriverHost("drivers", specs, bus, "tcp://127.0.0.1:0", open_spec)
    if prepare is not None:
        prepare(host)
    with host:
        if connected_within_s is not None:
            wait_connected(host, connected_within_s)
        yield host


@dataclasses.dataclass
class LiveLab:
    """A simulated lab, a hub and a driver host for its instruments, in this process."""

    config: LabConfig  # configs/sim-lab.yaml as loaded (its bus on the configured ports)
    lab: Lab
    resources: dict[str, str]  # {instrument: resource string on the port really bound}
    hub: Hub
    bus: BusSettings  # config.bus re-pointed at the hub
    host: DriverHost
    specs: list[InstrumentSpec]


@contextmanager
def live_lab(
    names: Sequence[str],
    clock: WorldClock,
    *,
    settings: SimSettings | None = None,
    config: LabConfig | None = None,
    timeout_s: float = 2.0,
    limits: bool = True,
    poll: Mapping[str, Mapping[str, float]] | None = None,
    poll_s: float | None = None,
    prepare: Callable[[DriverHost], None] | None = None,
    connected_within_s: float | None = None,
) -> Iterator[LiveLab]:
    """The lab's instruments `names` simulated on free loopback ports (world `settings`, by
    default the lab's own `sim` section, on `clock`), a hub on free ports, and a driver host for
    them on the hub's bus; all stopped again, in reverse order, on leaving.

    Each instrument's spec: command timeout `timeout_s`, the lab's limits (unless `limits` is
    False), and what it polls: `poll[name]` if given, else every parameter the lab polls at
    `poll_s` seconds if given, else nothing. `prepare` and `connected_within_s`: see
    `driver_host`."""
    config = config or lab_config()
    polls = poll or {}
    world = settings if settings is not None else config.sim
    with (
        Lab(lab_instruments(config, names), world, clock, free_ports=True) as lab,
        hub_on_free_ports(config.bus) as (hub, bus),
    ):
        resources = lab.resources()
        specs = []
        for n in names:
            inst = config.instruments[n]
            if n in polls:
                polled = dict(polls[n])
            elif poll_s is not None:
                polled = {k: poll_s for k in inst.poll}
            else:
                polled = {}
            specs.append(
                InstrumentSpec(
                    name=n,
                    model=inst.model,
                    address=resources[n],
                    timeout_s=timeout_s,
                    limits=inst.limit_values() if limits else {},
                    poll=polled,
                )
            )
        with driver_host(
            specs, bus, prepare=prepare, connected_within_s=connected_within_s
        ) as host:
            yield LiveLab(config, lab, resources, hub, bus, host, specs)


def sim_rf_power(lab: Lab) -> float:
    """The RF level straight from the simulated instrument, bypassing ionpilot.

    Only the resource is closed: pyvisa-py hands every caller in a process the same resource
    manager, and closing it would close the driver host's sessions too.
    """
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(lab.resources()["rf_drive"], read_termination="\n")
    try:
        assert isinstance(inst, pyvisa.resources.MessageBasedResource)
        inst.timeout = 2000
        return float(inst.query("SOUR:POW?"))
    finally:
        inst.close()
