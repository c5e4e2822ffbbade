"""ionpilot: control and autonomous operation of trapped-ion optical clocks and processors."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("ionpilot")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from ionpilot.experiments.station import qcodes_station
    from ionpilot.script import Lab, connect

__all__ = ["Lab", "__version__", "connect", "qcodes_station"]

# The script API pulls in ZeroMQ and the config loader: imported on first use, so that
# `import ionpilot` (the CLI's first line) stays cheap.
_LAZY = {
    "connect": "ionpilot.script",
    "Lab": "ionpilot.script",
    "qcodes_station": "ionpilot.experiments.station",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ionpilot' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
