"""`ionpilot run SCRIPT.py [--config LAB] [ARGS ...]`: run a user script against the live lab,
with the experiments' progress line (points done, rate, time left) for every scan it makes.

The script runs in this process as `__main__` (its own `sys.argv` is SCRIPT.py ARGS), with the
lab file in the environment (`IONPILOT_LAB`, which `ionpilot.experiments.lab_file()` and the
examples read). QCoDeS `dond` sweeps show QCoDeS's own progress bar. A missing script, a bad lab
file, or a lab that does not answer is said in one line, without a traceback; an error in the
script's own code keeps its traceback (it is the author's to read)."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path
from typing import Any

from ionpilot.config import DEFAULT_CONFIG
from ionpilot.runtime import load_or_report


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run", help="run a user script against the live lab, with progress reporting"
    )
    parser.add_argument("script", help="the Python script (SCRIPT.py)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="lab file")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    parser.set_defaults(handler=run)


def _config_in(argv: list[str]) -> str | None:
    """A `--config LAB` given after the script (it is the script's too: the examples take it)."""
    for i, word in enumerate(argv):
        if word == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--config="):
            return word.partition("=")[2]
    return None


def run(args: argparse.Namespace) -> int:
    args.config = _config_in(args.args) or args.config
    script = Path(args.script)
    if script.suffix != ".py":
        print(f"error: {script}: not a Python script (SCRIPT.py)", file=sys.stderr)
        return 2
    if not script.is_file():
        print(f"error: {script}: no such script", file=sys.stderr)
        return 2
    if load_or_report(args.config) is None:
        return 2
    import qcodes

    from ionpilot.bus.codec import BusError
    from ionpilot.commands.experiment import ProgressLine
    from ionpilot.experiments.clock_laser import ClockLaserRefused
    from ionpilot.experiments.pulses import JobFailed
    from ionpilot.experiments.scan import report_progress_to
    from ionpilot.experiments.station import LAB_ENV

    dond_progress = qcodes.config.dataset.dond_show_progress
    qcodes.config.dataset.dond_show_progress = True
    report_progress_to(ProgressLine())
    saved_argv, saved_path = sys.argv, list(sys.path)
    os.environ[LAB_ENV] = str(Path(args.config).resolve())
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            return 1
        return int(code or 0)
    except BusError as exc:
        print(f"error: {script}: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except (ClockLaserRefused, JobFailed) as exc:
        print(f"error: {script}: {exc}", file=sys.stderr)
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        report_progress_to(None)
        qcodes.config.dataset.dond_show_progress = dond_progress
    return 0
