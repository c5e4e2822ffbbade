"""The simulated SC10 driven through pyserial (socket://) with the command sequences of the
SC10 manual: every command echoed, a value line for queries, the `> ` prompt, CMD_NOT_DEFINED /
CMD_ARG_INVALID for bad input (nothing changed), and the timed modes on world time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import serial
from simclients import Sc10Client

from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import SimSettings


@pytest.fixture
def lab() -> Iterator[Lab]:
    instruments = {"shutter_399": ("thorlabs_sc10", "socket://127.0.0.1:1")}
    with Lab(instruments, SimSettings(seed=2), free_ports=True) as running:
        yield running


@pytest.fixture
def sc10(lab: Lab) -> Iterator[Sc10Client]:
    client = Sc10Client(lab.resources()["shutter_399"])
    yield client
    client.close()


def test_identity_queries_and_factory_settings(sc10: Sc10Client) -> None:
    assert sc10.command("id?") == ["id?", "THORLABS SC10 VERSION 1.07"]
    factory = {"mode?": "1", "rep?": "1", "open?": "10", "shut?": "10", "trig?": "0"}
    factory |= {"xto?": "0", "baud?": "0", "ens?": "0", "closed?": "1", "interlock?": "0"}
    for query, value in factory.items():
        assert sc10.command(query) == [query, value]
    listing = sc10.command("?")
    assert listing[0] == "?" and any("closed?" in line for line in listing[1:])


def test_settings_set_and_read_back(sc10: Sc10Client) -> None:
    for command, query, value in [
        ("rep=25", "rep?", "25"),
        ("open=1500", "open?", "1500"),
        ("shut=999999", "shut?", "999999"),
        ("trig=1", "trig?", "1"),
        ("xto=1", "xto?", "1"),
        ("baud=1", "baud?", "1"),
        ("mode=4", "mode?", "4"),
    ]:
        assert sc10.command(command) == [command]  # echo, no value line
        assert sc10.command(query) == [query, value]


def test_bad_input_is_refused_and_changes_nothing(sc10: Sc10Client, lab: Lab) -> None:
    for bad in ("rep=0", "rep=100", "mode=6", "mode=x", "open=1000000", "trig=2", "baud=-1"):
        assert sc10.command(bad) == [bad, "CMD_ARG_INVALID"]
    for bad in ("bogus", "ens=1", "closed=1", "mode"):
        assert sc10.command(bad) == [bad, "CMD_NOT_DEFINED"]
    assert sc10.command("rep?") == ["rep?", "1"] and sc10.command("mode?") == ["mode?", "1"]
    assert lab.world.shutters["399"] is False


def test_manual_mode_opens_and_closes_the_beam(sc10: Sc10Client, lab: Lab) -> None:
    assert sc10.command("ens") == ["ens"]
    assert sc10.command("ens?") == ["ens?", "1"] and sc10.command("closed?") == ["closed?", "0"]
    assert lab.world.shutters["399"] is True
    sc10.command("ens")
    assert sc10.command("closed?") == ["closed?", "1"] and lab.world.shutters["399"] is False


def test_single_and_repeat_modes_run_on_world_time(sc10: Sc10Client, lab: Lab) -> None:
    sc10.command("open=200")
    sc10.command("shut=300")
    sc10.command("mode=3")
    sc10.command("ens")
    assert sc10.command("closed?") == ["closed?", "0"]
    lab.world.advance(0.25)
    assert sc10.command("closed?") == ["closed?", "1"]
    assert sc10.command("ens?") == ["ens?", "0"]  # one period, then the sequence is over
    sc10.command("rep=2")
    sc10.command("mode=4")
    sc10.command("ens")
    lab.world.advance(0.6)  # second period, open part
    assert sc10.command("closed?") == ["closed?", "0"] and lab.world.shutters["399"] is True
    lab.world.advance(0.5)
    assert sc10.command("ens?") == ["ens?", "0"] and sc10.command("closed?") == ["closed?", "1"]


def test_savp_resp_and_default(sc10: Sc10Client) -> None:
    sc10.command("rep=7")
    assert sc10.command("savp") == ["savp"]
    sc10.command("rep=9")
    assert sc10.command("resp") == ["resp"]
    assert sc10.command("rep?") == ["rep?", "7"]
    assert sc10.command("default") == ["default"]
    assert sc10.command("rep?") == ["rep?", "1"]


def test_half_written_line_and_dropped_connection_change_nothing(lab: Lab) -> None:
    address = lab.resources()["shutter_399"]
    host, port = address.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"ens")  # no CR: not a command yet
    assert _ask_when_free(address, b"ens?\r") == b"ens?\r0\r> "
    assert lab.world.shutters["399"] is False


def _ask_when_free(address: str, request: bytes) -> bytes:
    """The reply once the one serial line is free again (the server notices the drop a moment
    later; until then a second connection is closed at once, as documented)."""
    deadline = time.monotonic() + 5.0
    while True:
        port = serial.serial_for_url(address, timeout=2)
        try:
            port.write(request)
            reply: bytes = port.read_until(b"> ")
        except (serial.SerialException, OSError):
            reply = b""
        finally:
            port.close()
        if reply or time.monotonic() > deadline:
            return reply
