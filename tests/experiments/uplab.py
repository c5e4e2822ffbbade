"""The one lab the experiment tests share: `ionpilot up` on free loopback ports (real
processes, the daemon's real recovery), a script handle on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from labprocs import (  # type: ignore[import-not-found]
    UpRun,
    command_client,
    daemon_status,
    lab_on_free_ports,
)

import ionpilot
from ionpilot.cli import main
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
    # two ions: the MS gate needs a pair (the clock experiments probe and read ion 0); the
    # daemon's reload check then expects up to two ions' fluorescence (one verifies too)
    extra = ["sim: {n_ions: 2}", "recovery: {single_ion_rate: 40000 1/s}"]
    lab_file = lab_on_free_ports(tmp, "i17-experiments", extra)
    config = load_config(lab_file)
    with UpRun(lab_file, 300, tmp) as up, command_client(config, "daemon") as daemon:
        assert up.wait_until(lambda: daemon_well(daemon_status(daemon)), 60, 0.2), up.tail()
        with ionpilot.connect(lab_file, timeout=10.0) as lab:
            yield UpLab(lab_file, up, lab)


def experiment(capsys: pytest.CaptureFixture[str], lab_file: Path, *argv: str) -> dict[str, Any]:
    """`ionpilot experiment ARGV --config LAB --json` run in this process (the CLI's own code
    path, without an interpreter's start-up), its progress line checked; the JSON result."""
    code = main(["experiment", *argv, "--config", str(lab_file), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "pt/s" in out.err and "left" in out.err  # the progress line
    result: dict[str, Any] = json.loads(out.out)
    return result
