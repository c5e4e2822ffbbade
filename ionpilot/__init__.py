"""ionpilot: control and autonomous operation of trapped-ion optical clocks and processors."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ionpilot")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
