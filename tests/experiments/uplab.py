"""The lab the experiment tests share: the shared live `ionpilot up` lab of the whole suite
(tests/foundation/sharedlab.py: free loopback ports, real processes, the daemon's real recovery,
handed over healthy), a script handle on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from labprocs import UpRun  # type: ignore[import-not-found]
from sharedlab import LiveUp  # type: ignore[import-not-found]

import ionpilot
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
