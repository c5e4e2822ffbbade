"""Which lab a command uses when none is named, said out loud; and the port check `up` runs
before it starts anything."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from ionpilot.cli import build_parser, main
from ionpilot.config import load_config
from ionpilot.labfile import announce, default_lab_file
from ionpilot.ports import first_taken, is_taken, shorten

ROOT = Path(__file__).resolve().parents[2]


def test_config_check_from_another_folder_finds_the_default_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    found = default_lab_file()
    assert found.is_file() and found.name == "sim-lab.yaml" and found.is_absolute()
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out.startswith("lab sim-yb171-e2: OK")
    monkeypatch.chdir(ROOT)
    assert default_lab_file() == Path("configs/sim-lab.yaml")  # a clone's own copy first


def test_a_command_says_which_lab_it_talks_to_when_none_is_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = load_config(ROOT / "configs" / "sim-lab.yaml")
    announce("my-lab.yaml", config)
    assert capsys.readouterr().err == ""
    announce(None, config)
    err = capsys.readouterr().err
    assert err.startswith("ionpilot: talking to lab 'sim-yb171-e2' (")
    assert "hub 127.0.0.1:15600/15601); --config FILE for another" in err


def test_options_work_after_the_verb_and_before_it() -> None:
    parser = build_parser()
    assert parser.parse_args(["sim", "fault", "ion_loss", "--config", "X"]).config == "X"
    assert parser.parse_args(["sim", "--config", "Y", "fault", "ion_loss"]).config == "Y"
    assert parser.parse_args(["sim", "restore", "ion"]).config is None


def test_a_taken_port_is_named_with_its_owner() -> None:
    config = load_config(ROOT / "configs" / "sim-lab.yaml")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert is_taken("127.0.0.1", port)
        lab = replace(config, bus=replace(config.bus, publish_port=port))
        line = first_taken(lab)
    assert line is not None
    assert line.startswith(f"port {port} on 127.0.0.1 (bus.publish_port) is taken by pid ")
    assert f"pid {os.getpid()} (" in line  # this test process holds it
    assert not is_taken("127.0.0.1", port)  # closed: free again


def test_command_lines_read_as_a_person_types_them() -> None:
    assert shorten("/x/.venv/bin/python -m ionpilot.cli hub --config lab.yaml") == (
        "ionpilot hub --config lab.yaml"
    )
    assert shorten("/usr/bin/nginx -g daemon", limit=10) == "nginx -g …"


def test_a_port_held_by_a_connection_is_named_too() -> None:
    """Moved ports can fall in the ephemeral range: a client's connection may hold one."""
    from ionpilot.ports import listener_of

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            port = client.getsockname()[1]
            owner = listener_of(port)
    assert owner is not None and owner.startswith(f"a connection of pid {os.getpid()} (")
