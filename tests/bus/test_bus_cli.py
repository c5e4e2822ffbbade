# mypy: disable-error-code="union-attr,assignment"
"""`ionpilot hub`, `ionpilot bus monitor` and `ionpilot bus call` against a real hub/server."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import pytest

from ionpilot.bus import BusError, CommandServer, Publisher, Subscriber
from ionpilot.commands.bus import main, parse_call_args


@pytest.fixture
def test_server(settings, ctx):
    server = CommandServer("drivers", settings, context=ctx)
    server.bind("tcp://127.0.0.1:0")
    state = {"frequency": 25e6}

    def set_(req):
        if not 20e6 <= req.args["value"] <= 40e6:
            raise BusError("out_of_limits", "frequency outside 20 MHz - 40 MHz")
        state[req.args["name"]] = req.args["value"]
        return req.args["value"]

    server.register("rf_drive", "get", lambda req: state[req.args["name"]], inline=True)
    server.register("rf_drive", "set", set_)
    server.start()
    yield server
    server.close()


def test_call_prints_the_reply(test_server, capsys):
    assert (
        main(["bus", "call", "rf_drive", "get", "frequency", "--endpoint", test_server.endpoint])
        == 0
    )
    assert capsys.readouterr().out.strip() == "25000000.0"
    code = main(
        ["bus", "call", "rf_drive", "set", "frequency", "30e6", "--endpoint", test_server.endpoint]
    )
    assert code == 0 and capsys.readouterr().out.strip() == "30000000.0"


def test_call_refused_exits_1_with_code_and_message(test_server, capsys):
    args = [
        "bus",
        "call",
        "rf_drive",
        "set",
        "frequency",
        "41e6",
        "--endpoint",
        test_server.endpoint,
    ]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: out_of_limits: frequency outside 20 MHz - 40 MHz"
    assert main(["bus", "call", "oven", "get", "--endpoint", test_server.endpoint]) == 1
    assert capsys.readouterr().err.startswith("error: unknown_target:")


def test_call_bad_input_exits_2(capsys):
    assert main(["bus", "call", "x", "get", "a", "b", "c", "--endpoint", "tcp://127.0.0.1:1"]) == 2
    assert main(["bus", "call", "x", "get", "--endpoint", "localhost:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "Traceback" not in err


def test_call_args_parsing():
    assert parse_call_args(["frequency", "25e6"]) == {"name": "frequency", "value": 25e6}
    assert parse_call_args(["reload_ion", "attempts=3", "note=hi there"]) == {
        "name": "reload_ion",
        "attempts": 3,
        "note": "hi there",
    }
    assert parse_call_args(["on", "true"]) == {"name": "on", "value": True}


def test_monitor_prints_live_messages_with_age_and_gaps(bus, ctx, capsys):
    stop = threading.Event()

    def feed():
        with Publisher(bus, "drivers", context=ctx) as pub:
            while not stop.is_set():
                pub.publish("tlm.rf_drive.frequency", 25e6, "Hz")
                pub.publish("evt.drivers.ignored", 0)
                stop.wait(0.005)

    t = threading.Thread(target=feed)
    t.start()
    try:
        code = main(
            [
                "bus",
                "monitor",
                "tlm.rf_drive",
                "--count",
                "3",
                "--host",
                "127.0.0.1",
                "--subscribe-port",
                str(bus.subscribe_port),
            ]
        )
    finally:
        stop.set()
        t.join(10)
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert " ms  tlm.rf_drive.frequency  drivers#" in line
        assert "25000000 Hz [OK]" in line and line.endswith("gaps=0")


def test_hub_command_forwards(settings, ctx, join):
    """The hub binds port 0 itself and prints the ports it got: no window in which another
    process could take a port between choosing it and binding it."""
    from dataclasses import replace

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ionpilot.commands.bus",
            "hub",
            "--host",
            "127.0.0.1",
            "--publish-port",
            "0",
            "--subscribe-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.fullmatch(
            r"hub: publishers -> tcp://127\.0\.0\.1:(\d+), subscribers -> tcp://127\.0\.0\.1:(\d+)",
            line.strip(),
        )
        assert found, line
        pub_port, sub_port = int(found[1]), int(found[2])
        assert 0 not in (pub_port, sub_port)
        s = replace(settings, publish_port=pub_port, subscribe_port=sub_port)
        with Publisher(s, "sim", context=ctx) as pub, Subscriber(s, ["tlm."], context=ctx) as sub:
            join(pub, sub)
            pub.publish("tlm.sim.x", 1.5)
            msg = sub.recv(timeout=10)
            assert msg is not None and msg.value == 1.5
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
