"""The `ionpilot` command line: one entry point, subcommands registered per subsystem."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ionpilot import __version__

# Each module in ionpilot/commands/ adds its subcommands through `register(subparsers)`.
COMMAND_MODULES: list[str] = [
    "config",
    "bus",
    "sim",
    "drivers",
    "daemon",
    "clock_sim",
    "sequencer",
    "jobs",
    "up",
    "gui",
    "recorder",
    "history",
    "adev",
    "logs",
    "experiment",
    "run",
    "deploy",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ionpilot",
        description="Control and autonomous operation of trapped-ion clocks and processors.",
    )
    parser.add_argument("--version", action="version", version=f"ionpilot {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"ionpilot.commands.{name}")
        module.register(subparsers)
    describe_subcommands(parser)
    return parser


def describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """`ionpilot X --help` opens with the line `ionpilot --help` lists for X, when X's module
    gave no longer description (argparse keeps the two apart)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not sub.description and listed.get(name):
                    sub.description = listed[name]
                describe_subcommands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code: int = handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
