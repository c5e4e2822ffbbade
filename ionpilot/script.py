"""The script API: `ionpilot.connect()` gives a handle on the running lab, through the bus.

    import ionpilot

    with ionpilot.connect("configs/sim-lab.yaml") as lab:
        lab.rf_drive.power.set(2.0)          # guarded: beyond the limits -> BusError(out_of_limits)
        print(lab.rf_drive.power.get())      # 2.0
        print(lab.dc_electrodes.ch01.voltage())   # QCoDeS style: call to get, call(v) to set
        lab.wavemeter.call("measure", 2)     # a whitelisted driver method
        lab.call("sim", "call", {...})       # any command to any process
        h = lab.history("servo.clock.output_frequency", since="1h")   # from the recorder
        h.t_ns, h.value, h.lock_state        # numpy arrays

A script holds no instrument itself: every request goes to the process that owns the target
(the driver host, the sim, ...), found through the bus directory of the lab config, so the
same limits and the same one-thread-per-instrument rule hold for scripts as for the GUI.
Failures raise `ionpilot.bus.codec.BusError` with its stable `code` (`out_of_limits`,
`unknown_target`, `instrument_error`, `timeout`, ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError, ErrorCode, Value
from ionpilot.bus.directory import Directory
from ionpilot.bus.settings import BusSettings
from ionpilot.config import DEFAULT_CONFIG, LabConfig, LabInfo, load_config

__all__ = ["Instrument", "Lab", "Parameter", "SeriesHistory", "connect"]

When = str | int | datetime  # "1h" (back from now), "now", ISO UTC text, ns since epoch, datetime


@dataclass(frozen=True)
class SeriesHistory:
    """One series as the recorder kept it: times (ns since the epoch, UTC) and values as numpy
    arrays; `min`/`max`/`count` per bucket when it came from the aggregates (`tier` agg_1min or
    agg_1h), `lock_state` for the clock's topics."""

    series: str
    unit: str
    tier: str
    every_s: float | None
    t_ns: npt.NDArray[np.int64]
    value: npt.NDArray[Any]
    min: npt.NDArray[np.float64] | None = None
    max: npt.NDArray[np.float64] | None = None
    count: npt.NDArray[np.int64] | None = None
    lock_state: npt.NDArray[np.str_] | None = None

    @property
    def t_s(self) -> npt.NDArray[np.floating[Any]]:
        """Times in seconds since the epoch (for plotting)."""
        return self.t_ns * 1e-9

    def __len__(self) -> int:
        return len(self.t_ns)


def _when(value: When, now_ns: int) -> int:
    from ionpilot.recorder.client import parse_when

    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int):
        return value
    return parse_when(value, now_ns)


def _floats(column: list[Any]) -> npt.NDArray[np.float64]:
    return np.array([np.nan if v is None else v for v in column], dtype=float)


def connect(
    config: str | Path | LabConfig = DEFAULT_CONFIG,
    *,
    timeout: float | None = None,
    name: str = "",
) -> Lab:
    """A handle on the lab described by `config` (a lab file, or an already loaded LabConfig).

    Nothing is contacted until the first request; `timeout` (s) overrides the bus default for
    every request. Raises `ionpilot.config.ConfigError` for an invalid lab file.
    """
    lab_config = config if isinstance(config, LabConfig) else load_config(config)
    directory = Directory.from_config(
        lab_config.bus.host, lab_config.processes, lab_config.instruments
    )
    lab_file = None if isinstance(config, LabConfig) else Path(config)
    lab = Lab(directory, lab_config.bus, timeout=timeout, name=name)
    lab.config, lab.lab_file = lab_config, lab_file  # for the experiments (data_dir, hash)
    return lab


class Lab:
    """Every instrument and process of one lab, by name: `lab.rf_drive`, `lab["oven"]`."""

    def __init__(
        self,
        directory: Directory,
        bus: BusSettings,
        *,
        timeout: float | None = None,
        name: str = "",
    ) -> None:
        self._directory = directory
        self._bus = bus
        self._timeout = timeout
        self._name = name or "ionpilot-script"
        self._clients: dict[str, CommandClient] = {}  # one per serving process
        self._closed = False
        self.config = LabConfig(lab=LabInfo(name=""))  # the lab file's content, when connected
        self.lab_file: Path | None = None  # the lab file, when connected through one

    @property
    def targets(self) -> list[str]:
        """Every process and instrument name the lab config knows."""
        return self._directory.targets()

    def instrument(self, name: str) -> Instrument:
        """The instrument (or process) `name`; `BusError(unknown_target)` if the lab has none."""
        self._directory.process_of(name)
        return Instrument(self, name)

    def __getitem__(self, name: str) -> Instrument:
        return self.instrument(name)

    def __getattr__(self, name: str) -> Instrument:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.instrument(name)
        except BusError as exc:
            raise AttributeError(exc.message) from exc

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.targets})

    def call(
        self,
        target: str,
        method: str,
        args: dict[str, Value] | None = None,
        *,
        timeout: float | None = None,
    ) -> Value:
        """Send `method` with `args` to `target`; the reply's value, or BusError."""
        client = self._client(self._directory.process_of(target))
        wait = self._timeout if timeout is None else timeout
        return client.call(target, method, args or {}, timeout=wait)

    def history(
        self,
        series: str,
        since: When = "1h",
        until: When = "now",
        every: float | str | None = None,
        *,
        raw: bool = False,
        timeout: float = 30.0,
    ) -> SeriesHistory:
        """`series` (TOPIC or TOPIC.FIELD) from the recorder between `since` and `until`:
        `"1h"`/`"5min"` back from now, ISO UTC text, ns since the epoch or a datetime. `every`
        (seconds or `"1min"`) asks for buckets of that width; `raw` for every sample. Raises
        BusError (`unknown_target` for a series never recorded) or ValueError (bad times)."""
        from ionpilot.recorder.client import fetch_history, parse_every

        now = time.time_ns()
        since_ns, until_ns = _when(since, now), _when(until, now)
        if until_ns <= since_ns:
            raise ValueError(f"until ({until!r}) must be later than since ({since!r})")
        every_s = parse_every(every) if isinstance(every, str) else every
        got = fetch_history(
            self.call, series, since_ns, until_ns, every_s, raw=raw, timeout=timeout
        )
        numeric = got["kind"] in ("number", "heartbeat")
        values = got["value"]
        return SeriesHistory(
            series=got["series"],
            unit=got["unit"],
            tier=got["tier"],
            every_s=got["every_s"],
            t_ns=np.asarray(got["t_ns"], dtype=np.int64),
            value=_floats(values) if numeric else np.asarray(values, dtype=object),
            min=_floats(got["min"]) if "min" in got else None,
            max=_floats(got["max"]) if "max" in got else None,
            count=np.asarray(got["count"], dtype=np.int64) if "count" in got else None,
            lock_state=np.asarray(got["lock_state"], dtype=str) if "lock_state" in got else None,
        )

    def _client(self, process: str) -> CommandClient:
        if self._closed:
            raise BusError(ErrorCode.BAD_REQUEST, "this lab handle is closed")
        client = self._clients.get(process)
        if client is None:
            endpoint = self._directory.resolve(process)
            client = CommandClient(self._bus, endpoint, name=self._name)
            self._clients[process] = client
        return client

    def close(self) -> None:
        """Close every connection (further requests raise BusError)."""
        self._closed = True
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ionpilot lab: {', '.join(self.targets)}>"


class Instrument:
    """One bus target: its parameters as attributes (`.power`, `.ch01.voltage`), `describe`,
    and whitelisted driver methods through `call`."""

    def __init__(self, lab: Lab, name: str) -> None:
        self._lab = lab
        self.name = name

    def __getattr__(self, name: str) -> Parameter:
        if name.startswith("_"):
            raise AttributeError(name)
        return Parameter(self, name)

    def parameter(self, path: str) -> Parameter:
        """The parameter with bus name `path` (`power`, `ch01.voltage`)."""
        return Parameter(self, path)

    def get(self, parameter: str) -> Value:
        """Read `parameter` from the instrument now (not a cached value)."""
        reply = self._lab.call(self.name, "get", {"name": parameter})
        return reply["value"] if isinstance(reply, dict) and "value" in reply else reply

    def set(self, parameter: str, value: Value) -> Value:
        """Set `parameter` within its limits; returns the value read back."""
        reply = self._lab.call(self.name, "set", {"name": parameter, "value": value})
        return reply["value"] if isinstance(reply, dict) and "value" in reply else reply

    def describe(self) -> Any:
        """Parameters, units, limits, last readings, methods (from the owner's caches)."""
        return self._lab.call(self.name, "describe")

    def call(self, method: str, *args: Value) -> Value:
        """Run the whitelisted driver method `method(*args)` on the instrument's own thread."""
        return self._lab.call(self.name, "call", {"name": method, "args": list(args)})

    def __repr__(self) -> str:
        return f"<ionpilot instrument {self.name}>"


class Parameter:
    """A parameter on the bus: `get()`, `set(value)`, or QCoDeS style `p()` / `p(value)`."""

    def __init__(self, instrument: Instrument, path: str) -> None:
        self._instrument = instrument
        self.path = path

    def __getattr__(self, name: str) -> Parameter:
        if name.startswith("_"):
            raise AttributeError(name)
        return Parameter(self._instrument, f"{self.path}.{name}")  # ch01.voltage

    def get(self) -> Value:
        return self._instrument.get(self.path)

    def set(self, value: Value) -> Value:
        return self._instrument.set(self.path, value)

    def __call__(self, *value: Value) -> Value:
        if len(value) > 1:
            raise TypeError("a parameter takes one value to set, or none to get")
        return self.set(value[0]) if value else self.get()

    def __repr__(self) -> str:
        return f"<ionpilot parameter {self._instrument.name}.{self.path}>"
