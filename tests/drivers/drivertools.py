"""What the driver tests share: pyvisa-sim addresses, unique instrument names, and a simulated
instrument whose writes are recorded (to assert what was, or was not, sent)."""

from __future__ import annotations

import itertools
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
