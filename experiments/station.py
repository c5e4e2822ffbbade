"""The lab's instruments as a QCoDeS `Station`, built from each owner's `describe`.

QCoDeS already has what experimenters use to scan and store (`Measurement`, `dond`, SQLite
datasets, netCDF export, plottr); ionpilot gives it parameters that get and set over the bus,
so the owner (the driver host) keeps enforcing limits and roles and a script never holds an
instrument. No local validator stands in for the owner's: a set beyond the limits goes to the
owner and comes back as `BusError(out_of_limits)` with nothing applied.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcodes.dataset import initialise_or_create_database_at
from qcodes.instrument import InstrumentBase, InstrumentModule
from qcodes.parameters import Parameter
from qcodes.station import Station

from ionpilot.bus.codec import BusError, ErrorCode

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = [
    "DATABASE_FILE",
    "BusParameter",
    "RemoteInstrument",
    "database_path",
    "default_lab_file",
    "lab_file_sha256",
    "qcodes_station",
]

DATABASE_FILE = "experiments/experiments.db"  # under the lab's data_dir
LAB_ENV = "IONPILOT_LAB"  # the lab file `ionpilot run` runs a script against


def default_lab_file() -> str:
    """The lab file a script should connect to: the one `ionpilot run --config` gave
    (`IONPILOT_LAB`), else the default simulated lab."""
    return os.environ.get(LAB_ENV) or "configs/sim-lab.yaml"


class BusParameter(Parameter):
    """One parameter of a bus instrument: `get` and `set` are requests to its owner."""

    def __init__(
        self,
        name: str,
        *,
        lab: Lab,
        target: str,
        path: str,
        unit: str,
        settable: bool,
        allowed: list[float] | None,
        instrument: InstrumentBase,
        **kwargs: Any,
    ) -> None:
        self._lab = lab
        self._target = target
        self._path = path
        metadata: dict[str, Any] = {"bus": f"{target}.{path}"}
        if allowed is not None:
            metadata["allowed"] = list(allowed)  # the owner's limits (it enforces them)
        super().__init__(
            name,
            instrument=instrument,
            unit=unit,
            label=path,
            get_cmd=self._get_remote,
            set_cmd=self._set_remote if settable else False,
            metadata=metadata,
            snapshot_get=False,  # a snapshot shows the owner's last readings (one describe)
            **kwargs,
        )

    def _get_remote(self) -> Any:
        return self._lab.instrument(self._target).get(self._path)

    def _set_remote(self, value: Any) -> None:
        self._lab.instrument(self._target).set(self._path, _plain(value))


def _plain(value: Any) -> Any:
    """numpy scalars (what sweeps produce) as the plain numbers the bus codec takes."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


class RemoteInstrument(InstrumentBase):
    """A bus instrument as QCoDeS sees it: parameters and channel submodules (`ch01.voltage`).

    A snapshot (what every dataset stores) asks the owner for one `describe` and shows its last
    readings, instead of reading every parameter of every instrument at each run's start."""

    def __init__(self, lab: Lab, name: str, description: dict[str, Any]) -> None:
        super().__init__(name, metadata={"model": description.get("model", "")})
        self._lab = lab
        self._by_path: dict[str, BusParameter] = {}
        params = description.get("parameters")
        for path, entry in sorted((params if isinstance(params, dict) else {}).items()):
            if isinstance(entry, dict):
                self._by_path[path] = _add(self, lab, name, path, entry)
        self._take_readings(description)

    def _take_readings(self, description: Any) -> None:
        params = description.get("parameters") if isinstance(description, dict) else None
        for path, entry in (params if isinstance(params, dict) else {}).items():
            last = entry.get("last") if isinstance(entry, dict) else None
            param = self._by_path.get(path)
            if param is not None and isinstance(last, dict) and last.get("value") is not None:
                param.cache.set(last["value"])

    def snapshot_base(
        self, update: bool | None = False, params_to_skip_update: Sequence[str] | None = None
    ) -> dict[Any, Any]:
        try:
            self._take_readings(self._lab.instrument(self.name).describe())
        except BusError as exc:  # the snapshot still says what it could not refresh
            self.metadata["snapshot_error"] = f"{exc.code}: {exc.message}"
        return super().snapshot_base(update=False, params_to_skip_update=params_to_skip_update)

    def get_idn(self) -> dict[str, str | None]:
        return {"vendor": None, "model": str(self.metadata.get("model", "")), "serial": None}


class RemoteModule(InstrumentModule[InstrumentBase]):
    """A channel (`ch01`) of a bus instrument."""


def _add(
    node: InstrumentBase, lab: Lab, target: str, path: str, entry: dict[str, Any]
) -> BusParameter:
    *modules, leaf = path.split(".")
    for module in modules:
        child = node.submodules.get(module)
        if child is None:
            child = RemoteModule(node, module)
            node.add_submodule(module, child)
        assert isinstance(child, InstrumentBase)
        node = child
    allowed = entry.get("allowed")
    return node.add_parameter(
        leaf,
        parameter_class=BusParameter,
        lab=lab,
        target=target,
        path=path,
        unit=str(entry.get("unit", "")),
        settable=bool(entry.get("settable", False)),
        allowed=allowed if isinstance(allowed, list) else None,
    )


def lab_file_sha256(path: str | Path) -> str:
    """The sha256 of the lab file (hex): which configuration a dataset was taken with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def database_path(lab: Lab) -> Path:
    """The lab's QCoDeS database: <data_dir>/experiments/experiments.db."""
    return Path(lab.config.lab.data_dir) / DATABASE_FILE


def qcodes_station(lab: Lab, instruments: list[str] | None = None) -> Station:
    """A QCoDeS `Station` (made the default) of the lab's instruments (all, or `instruments`),
    each built from its owner's `describe`; the lab's QCoDeS database (in its data_dir) becomes
    the current one. The station's metadata, and so every dataset's snapshot, holds the lab's
    name and the lab file's sha256. Raises BusError (`unknown_target`) for a name the lab has
    no instrument of, and the owner's BusError when it does not answer."""
    known = list(lab.config.instruments)
    names = known if instruments is None else list(instruments)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BusError(
            ErrorCode.UNKNOWN_TARGET,
            f"no instrument {', '.join(unknown)} in the lab (it has {', '.join(known)})",
        )
    components = []
    for name in names:
        description = lab.instrument(name).describe()
        components.append(
            RemoteInstrument(lab, name, description if isinstance(description, dict) else {})
        )
    station = Station(*components)
    station.metadata["ionpilot"] = {
        "lab": lab.config.lab.name,
        "lab_file": str(lab.lab_file) if lab.lab_file is not None else "",
        "lab_file_sha256": lab_file_sha256(lab.lab_file) if lab.lab_file is not None else "",
    }
    path = database_path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    initialise_or_create_database_at(path)
    return station
