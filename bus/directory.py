"""Who serves what: a target (a process, or an instrument a process owns) → its command endpoint.

Built by the CLI and the supervisor from the lab config; knows nothing of the config's classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from ionpilot.bus.codec import BusError, ErrorCode


class HasCommandPort(Protocol):
    """Anything with a `command_port` (the config's `ProcessSettings`)."""

    @property
    def command_port(self) -> int: ...


class Directory:
    """Resolves target names to `tcp://` endpoints of command servers."""

    def __init__(self, endpoints: Mapping[str, str], owners: Mapping[str, str] | None = None):
        self._endpoints = dict(endpoints)  # process -> endpoint
        self._owners = dict(owners or {})  # target -> process
        for target, process in self._owners.items():
            if process not in self._endpoints:
                raise ValueError(f"{target} belongs to {process}, which has no command endpoint")

    @classmethod
    def from_config(
        cls,
        host: str,
        processes: Mapping[str, HasCommandPort],
        instruments: Mapping[str, object] | Iterable[str] = (),
        instrument_process: str = "drivers",
    ) -> Directory:
        """Every process at `tcp://<its host, else host>:<command_port>`; every instrument owned
        by its `host` process (the config's `InstrumentConfig.host`), else by
        `instrument_process`."""
        endpoints = {
            name: f"tcp://{getattr(p, 'host', '') or host}:{p.command_port}"
            for name, p in processes.items()
        }
        if isinstance(instruments, Mapping):
            owners = {
                name: str(getattr(inst, "host", instrument_process) or instrument_process)
                for name, inst in instruments.items()
            }
        else:
            owners = {name: instrument_process for name in instruments}
        return cls(endpoints, owners)

    def process_of(self, target: str) -> str:
        """The process serving `target`; `BusError(unknown_target)` when nobody does."""
        if target in self._endpoints:
            return target
        try:
            return self._owners[target]
        except KeyError:
            known = ", ".join(self.targets())
            raise BusError(ErrorCode.UNKNOWN_TARGET, f"{target!r} (known: {known})") from None

    def resolve(self, target: str) -> str:
        return self._endpoints[self.process_of(target)]

    def targets(self) -> list[str]:
        return sorted({*self._endpoints, *self._owners})
