"""The one lab the experiment tests share: `ionpilot up` on free loopback ports (real
processes, the daemon's real recovery), a script handle on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from labprocs import (  # type: ignore[import-not-found]
    UpRun,
    command_client,
    daemon_status,
    lab_on_free_ports,
)

import ionpilot
from ionpilot.config import load_config
from ionpilot.script import Lab


@dataclass
class UpLab:
    lab_file: Path
    up: UpRun
    lab: Lab


def daemon_well(status: dict[str, object]) -> bool:
    return bool(status) and not status.get("alarm") and status.get("recovering") == ""


@pytest.fixture(scope="session")
def up_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpLab]:
    tmp = tmp_path_factory.mktemp("experiments")
    lab_file = lab_on_free_ports(tmp, "i17-experiments")
    config = load_config(lab_file)
    with UpRun(lab_file, 300, tmp) as up, command_client(config, "daemon") as daemon:
        assert up.wait_until(lambda: daemon_well(daemon_status(daemon)), 60, 0.2), up.tail()
        with ionpilot.connect(lab_file, timeout=10.0) as lab:
            yield UpLab(lab_file, up, lab)
