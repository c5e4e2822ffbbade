"""What the driver tests share: pyvisa-sim addresses, unique instrument names, a simulated
instrument whose writes are recorded (to assert what was, or was not, sent), and a fake
instrument with just what the driver host touches (to test its command rules without a lab)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from ionpilot.drivers.base import IonpilotDriver
from ionpilot.drivers.registry import open_instrument

GOOD = "TCPIP0::127.0.0.1::5025::SOCKET"  # a working device in every sim/yaml file
GARBLED = "TCPIP0::127.0.0.1::5026::SOCKET"  # the same model answering garbage
_names = itertools.count()


def unique_name(prefix: str) -> str:
    """QCoDeS instrument names must be unique per process."""
    return f"{prefix}{next(_names)}"


def record_writes(inst: Any) -> list[str]:
    """Every message written to the instrument from now on, in order."""
    sent: list[str] = []
    original = inst.visa_handle.write

    def spy(message: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(message)
        return original(message, *args, **kwargs)

    inst.visa_handle.write = spy
    return sent


def open_recorded(
    prefix: str, model: str, address: str = GOOD, limits: dict[str, Any] | None = None
) -> tuple[Any, list[str]]:
    """A pyvisa-sim instrument of `model` with `limits`, and the list of what it is sent."""
    inst: IonpilotDriver = open_instrument(
        unique_name(prefix), model, address, limits, simulated=True, timeout_s=0.2
    )
    return inst, record_writes(inst)


class FakeVoltage:
    """A settable parameter that records every set; `hold_first` makes the first set wait
    until `release` is set (a long ramp ahead in the queue), telling `started` it began."""

    unit = "V"
    settable = True

    def __init__(self, hold_first: bool = False) -> None:
        self.sets: list[object] = []
        self.hold_first = hold_first
        self.started = threading.Event()
        self.release = threading.Event()

    def set(self, value: object) -> None:
        if self.hold_first and not self.sets:
            self.started.set()
            assert self.release.wait(30), "the held set was never released"
        self.sets.append(value)

    def get(self) -> float:
        return 1.0


class FakeInstrument:
    """Just what the driver host's worker touches: one parameter, `voltage`."""

    bus_methods = ()

    def __init__(self, hold_first: bool = False) -> None:
        self.voltage = FakeVoltage(hold_first)

    def parameter_by_path(self, path: str) -> FakeVoltage:
        if path != "voltage":
            raise KeyError(path)
        return self.voltage

    def telemetry_parameters(self) -> tuple[str, ...]:
        return ("voltage",)

    def close(self) -> None:
        pass
