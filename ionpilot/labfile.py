"""Which lab file a command uses: `--config FILE` when given, else the default lab, found in the
working folder (`configs/sim-lab.yaml`, a clone) or, from any other folder, in the installed
package; a command that talks to a running lab says which one on stderr when it chose for you."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ionpilot.config import DEFAULT_CONFIG

if TYPE_CHECKING:
    from ionpilot.config import LabConfig

CONFIG_HELP = (
    "lab file (default: configs/sim-lab.yaml in this folder, else the one installed with ionpilot)"
)


def default_lab_file() -> Path:
    """`configs/sim-lab.yaml` under the working folder, else the copy shipped in the package."""
    if DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    packaged = Path(str(resources.files("ionpilot.configs").joinpath(DEFAULT_CONFIG.name)))
    return packaged if packaged.is_file() else DEFAULT_CONFIG


def add_config_option(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """`--config FILE`. `nested`: on a verb under a command that has it too (`sim fault X
    --config F`), where an absent option must not erase the command's own."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS if nested else None,
        help=CONFIG_HELP,
    )


def lab_file(value: str | None) -> str:
    """The lab file to use: the given one, else the default."""
    return value if value else str(default_lab_file())


def announce(value: str | None, config: LabConfig) -> None:
    """When the user named no lab file, say which lab a command is about to talk to."""
    if value:
        return
    bus = config.bus
    print(
        f"ionpilot: talking to lab '{config.lab.name}' ({lab_file(None)}, hub "
        f"{bus.host}:{bus.publish_port}/{bus.subscribe_port}); --config FILE for another",
        file=sys.stderr,
    )
