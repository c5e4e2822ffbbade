"""The lab the experiment tests share: the shared live `ionpilot up` lab of the whole suite
(tests/foundation/sharedlab.py: free loopback ports, real processes, the daemon's real recovery,
handed over healthy), a script handle on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from labprocs import UpRun  # type: ignore[import-not-found]
from sharedlab import LiveUp  # type: ignore[import-not-found]

import ionpilot
from ionpilot.cli import main
from ionpilot.script import Lab


@dataclass
class UpLab:
    lab_file: Path
    up: UpRun
    lab: Lab


@pytest.fixture
def up_lab(shared_up: LiveUp) -> Iterator[UpLab]:
    with ionpilot.connect(shared_up.lab_file, timeout=10.0) as lab:
        yield UpLab(shared_up.lab_file, shared_up.up, lab)


def experiment(capsys: pytest.CaptureFixture[str], lab_file: Path, *argv: str) -> dict[str, Any]:
    """`ionpilot experiment ARGV --config LAB --json` run in this process (the CLI's own code
    path, without an interpreter's start-up), its progress line checked; the JSON result."""
    code = main(["experiment", *argv, "--config", str(lab_file), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "pt/s" in out.err and "left" in out.err  # the progress line
    result: dict[str, Any] = json.loads(out.out)
    return result
