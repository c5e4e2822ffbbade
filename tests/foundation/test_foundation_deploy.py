"""`ionpilot deploy systemd` writes one unit per process, as `up` would run it, with its bus
identity; an unknown process is a clear error that writes nothing."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from labprocs import lab_on_free_ports

from ionpilot.cli import main


def test_units_for_a_lab_on_several_machines(tmp_path: Path, capsys) -> None:
    lab = lab_on_free_ports(tmp_path, "split")
    out = tmp_path / "units"
    code = main(
        [
            "deploy",
            "systemd",
            "--config",
            str(lab),
            "--output",
            str(out),
            "--process",
            "hub",
            "--process",
            "drivers",
            "--process",
            "daemon",
        ]
    )
    assert code == 0, capsys.readouterr().err
    units = {p.name: p.read_text() for p in out.iterdir()}
    assert set(units) == {f"ionpilot-split-{p}.service" for p in ("hub", "drivers", "daemon")}
    drivers = units["ionpilot-split-drivers.service"]
    exec_line = next(line for line in drivers.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_line.removeprefix("ExecStart="))
    assert argv[1:] == [
        "-m",
        "ionpilot.cli",
        "drivers",
        "--config",
        str(lab.resolve()),
        "--process",
        "drivers",
    ]
    assert "Environment=IONPILOT_IDENTITY=drivers" in drivers
    assert "Restart=always" in drivers and "WantedBy=multi-user.target" in drivers
    assert "daemon --config" in units["ionpilot-split-daemon.service"]
    assert " hub --config" in units["ionpilot-split-hub.service"]


def test_an_unknown_process_writes_nothing(tmp_path: Path, capsys) -> None:
    lab = lab_on_free_ports(tmp_path, "split")
    out = tmp_path / "units"
    assert (
        main(
            [
                "deploy",
                "systemd",
                "--config",
                str(lab),
                "--output",
                str(out),
                "--process",
                "drivers",
                "--process",
                "nosuch",
            ]
        )
        == 2
    )
    assert "'nosuch' is not a process" in capsys.readouterr().err
    assert not out.exists()


def test_deploy_needs_a_kind(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["deploy", "systemd"])  # --process is required
