"""The simulated lab: a World plus one server per configured instrument, on an asyncio loop in
a background thread. Built from plain data (`{name: (model, address)}` + SimSettings) so it
needs nothing of ours; `ionpilot sim` and the tests both use it."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Mapping
from concurrent.futures import Future

from .clock import RealClock, VirtualClock, WorldClock
from .instruments import (
    Bristol871a,
    DlcPro,
    Hmc8043,
    Keysight53230a,
    MenloComb,
    Protocol,
    Pulser,
    Qdac2,
    Sc10,
    Smb100a,
)
from .monitoring import MonitoringServer
from .server import InstrumentServer
from .settings import SimSettings
from .world import (
    INSTRUMENT_FAULTS,
    LASER_SPECS,
    RESTORE_PARTS,
    SHUTTERS,
    FaultError,
    World,
    restores_something,
)

SIMPLE_MODELS: dict[str, type[Protocol]] = {
    "rs_smb100a": Smb100a,
    "qdac2": Qdac2,
    "hmc8043": Hmc8043,
    "keysight_53230a": Keysight53230a,
    "bristol_871a": Bristol871a,
    "menlo_fc1500": MenloComb,
    "ionpilot_pulser": Pulser,
}
_ADDRESS_PATTERNS = (
    re.compile(r"^(TCPIP0?::[\w.\-]+::)(\d+)(::SOCKET)$", re.IGNORECASE),
    re.compile(r"^(socket://[\w.\-]+:)(\d+)()$"),
    re.compile(r"^(tcp://[\w.\-]+:)(\d+)()$"),
    re.compile(r"^(https?://[\w.\-]+:)(\d+)(/.*)?$"),
)


class LabError(ValueError):
    """The instrument list cannot be simulated (unknown model, address or wiring)."""


def address_port(address: str) -> tuple[str, int, str]:
    """'TCPIP0::127.0.0.1::15025::SOCKET' -> ('TCPIP0::127.0.0.1::', 15025, '::SOCKET')."""
    for pattern in _ADDRESS_PATTERNS:
        m = pattern.match(address)
        if m:
            return m.group(1), int(m.group(2)), m.group(3) or ""
    raise LabError(f"cannot serve address '{address}'")


def _bind_host(prefix: str) -> str:
    """The address an instrument's server binds: the host of its address ('TCPIP0::10.0.0.2::'
    -> '10.0.0.2'; a lab across machines reaches it there), loopback for names and serial."""
    for part in re.split(r"::|://|:", prefix):
        if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", part):
            return part
    return "127.0.0.1"


def _wavelength_key(name: str, keys: tuple[str, ...], model: str) -> str:
    found = [k for k in keys if k in name]
    if len(found) != 1:
        raise LabError(f"{name} ({model}): name must contain one of {', '.join(keys)}")
    return found[0]


def make_protocol(world: World, name: str, model: str) -> Protocol:
    """The simulated instrument for one configured instrument (lasers and shutters are wired
    to the world by the wavelength in their name: laser_369, shutter_935, ...)."""
    if model == "dlc_pro":
        return DlcPro(world, name, _wavelength_key(name, tuple(LASER_SPECS), model))
    if model == "thorlabs_sc10":
        return Sc10(world, name, _wavelength_key(name, SHUTTERS, model))
    cls = SIMPLE_MODELS.get(model)
    if cls is None:
        raise LabError(f"{name}: no simulation of model '{model}'")
    return cls(world, name)


class Lab:
    """A running simulated lab. `free_ports=True` binds every server to a free port (tests)."""

    def __init__(
        self,
        instruments: Mapping[str, tuple[str, str]],
        settings: SimSettings | None = None,
        clock: WorldClock | None = None,
        free_ports: bool = False,
    ) -> None:
        self.settings = settings or SimSettings()
        self.world = World(self.settings, clock if clock is not None else VirtualClock())
        self._addresses: dict[str, tuple[str, int, str]] = {}
        self.servers: dict[str, InstrumentServer] = {}
        # second ports: a DLC pro's monitoring line, on its command port + 1 (as 1998/1999)
        self.monitoring: dict[str, MonitoringServer] = {}
        for name, (model, address) in instruments.items():
            prefix, port, suffix = address_port(address)
            self._addresses[name] = (prefix, port, suffix)
            protocol = make_protocol(self.world, name, model)
            self.servers[name] = InstrumentServer(
                protocol, self.world, 0 if free_ports else port, _bind_host(prefix)
            )
            if isinstance(protocol, DlcPro):
                mport = 0 if free_ports else port + 1
                self.monitoring[name] = MonitoringServer(protocol, self.world, mport)
        taken = {port for _prefix, port, _suffix in self._addresses.values()}
        for name, monitor in self.monitoring.items():
            if monitor.port in taken:  # a lab file that packs ports: any free one, reported
                self.world.events.append((0.0, f"{name}: monitoring line moved off {monitor.port}"))
                monitor.port = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sim-lab", daemon=True)
        self.world.add_fault_listener(self._on_fault)

    @classmethod
    def real_time(cls, instruments: Mapping[str, tuple[str, str]], settings: SimSettings) -> Lab:
        return cls(instruments, settings, RealClock(settings.speed))

    def _run(self, coro):  # type: ignore[no-untyped-def]
        future: Future[object] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=10)

    def start(self) -> dict[str, str]:
        """Start every server; returns {name: resource string} with the ports really bound."""
        self._thread.start()
        for server in self.servers.values():
            self._run(server.start())
        for name, monitor in self.monitoring.items():
            if monitor.port == 0:  # free ports: still next to the command line if that is free
                monitor.port = self.servers[name].port + 1
            self._run(monitor.start())
        return self.resources()

    def monitoring_ports(self) -> dict[str, int]:
        """{name: port} of every DLC pro's monitoring line, as really bound."""
        return {name: server.port for name, server in self.monitoring.items()}

    def resources(self) -> dict[str, str]:
        out = {}
        for name, server in self.servers.items():
            prefix, _port, suffix = self._addresses[name]
            out[name] = f"{prefix}{server.port}{suffix}"
        return out

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        for server in self.servers.values():
            self._run(server.stop())
        for monitor in self.monitoring.values():
            self._run(monitor.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    def inject(self, kind: str, target: str | None = None) -> str:
        """The one fault API (tests, CLI, bus): see World.inject for kinds and targets."""
        if kind in INSTRUMENT_FAULTS and target not in self.servers:
            known = ", ".join(self.servers)
            raise FaultError(f"unknown instrument '{target}' (known: {known})")
        if (
            kind == "restore"
            and target not in self.servers
            and not restores_something(target or "")
        ):
            raise FaultError(
                f"nothing called '{target}' to restore (instruments: {', '.join(self.servers)}; "
                f"parts: {RESTORE_PARTS})"
            )
        return self.world.inject(kind, target)

    def restore(self, target: str) -> str:
        return self.inject("restore", target)

    def _on_fault(self, kind: str, target: str | None) -> None:
        """Let the instrument's server act on the fault (drop or reopen its port); outside the
        loop thread, wait for it, so the fault is in force when inject() returns."""
        server = self.servers.get(target or "")
        if server is None or not self._thread.is_alive():
            return
        futures = [asyncio.run_coroutine_threadsafe(server.on_fault(kind, target), self.loop)]
        monitor = self.monitoring.get(target or "")
        if monitor is not None:
            futures.append(
                asyncio.run_coroutine_threadsafe(monitor.on_fault(kind, target), self.loop)
            )
        if threading.current_thread() is not self._thread:
            for future in futures:
                future.result(timeout=10)

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
