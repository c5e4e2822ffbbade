# mypy: disable-error-code="union-attr,assignment"
"""`ionpilot hub`, `ionpilot bus monitor` and `ionpilot bus call` against a real hub/server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from datetime import datetime

import pytest

from ionpilot.bus import BusError, CommandServer, Publisher, Subscriber
from ionpilot.commands.bus import main, parse_call_args
from ionpilot.commands.bus import main as bus_main


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
        stamp, rest = line.split("  ", 1)
        datetime.fromisoformat(stamp)  # local wall-clock time with its offset
        assert rest.startswith("tlm.rf_drive.frequency  drivers#")
        assert "25000000.0 Hz [OK]" in line and " ms  " in line and line.endswith("gaps=0")


def test_monitor_keeps_every_digit_and_field_and_speaks_json(bus, ctx, capsys):
    """A clock frequency to the Hz (16 digits) and a long record, uncut; `--json` per line."""
    stop = threading.Event()
    record = {f"field_{i}": i for i in range(30)}

    def feed():
        with Publisher(bus, "daemon", context=ctx) as pub:
            while not stop.is_set():
                pub.publish("servo.clock.output_frequency", 642121496772645.1, "Hz")
                pub.publish("servo.record", record)
                stop.wait(0.005)

    t = threading.Thread(target=feed)
    t.start()
    port = str(bus.subscribe_port)
    try:
        args = ["bus", "monitor", "servo.", "--count", "4", "--subscribe-port", port]
        code = main([*args, "--host", "127.0.0.1"])
        text = capsys.readouterr().out
        json_code = main([*args, "--host", "127.0.0.1", "--json"])
        json_lines = capsys.readouterr().out.strip().splitlines()
    finally:
        stop.set()
        t.join(10)
    assert code == 0 and json_code == 0
    assert "642121496772645.1 Hz" in text and "..." not in text
    assert '"field_29": 29' in text
    rows = [json.loads(line) for line in json_lines]
    assert len(rows) == 4
    frequency = next(r for r in rows if r["topic"] == "servo.clock.output_frequency")
    assert frequency["value"] == 642121496772645.1 and frequency["unit"] == "Hz"
    assert frequency["src"] == "daemon" and datetime.fromisoformat(frequency["time"])
    assert next(r for r in rows if r["topic"] == "servo.record")["value"] == record


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


@pytest.fixture
def described_server(settings, ctx):
    """An rf_drive that says its units (`describe`) and records what `set` receives."""
    server = CommandServer("drivers", settings, context=ctx)
    server.bind("tcp://127.0.0.1:0")
    applied: list[tuple[str, float]] = []
    units = {"power": "dBm", "frequency": "Hz", "channel_current": "mA", "count": ""}

    def set_(req):
        applied.append((req.args["name"], req.args["value"]))
        return req.args["value"]

    server.register(
        "rf_drive",
        "describe",
        lambda req: {"parameters": {n: {"unit": u} for n, u in units.items()}},
        inline=True,
    )
    server.register("rf_drive", "set", set_)
    server.start()
    yield server, applied
    server.close()


def test_call_set_takes_units_and_refuses_the_wrong_one(described_server, capsys):
    server, applied = described_server

    def main(words):
        return bus_main(["bus", "call", "rf_drive", "set", *words, "--endpoint", server.endpoint])

    assert main(["power", "2 dBm"]) == 0
    assert main(["frequency", "25 MHz"]) == 0
    assert main(["channel_current", "0.15 A"]) == 0  # the parameter's own unit is mA
    assert main(["frequency", "25"]) == 0  # bare: the parameter's own unit
    err = capsys.readouterr().err
    assert "rf_drive.frequency: 25 taken as 25 Hz (its unit: Hz)" in err
    assert applied == [
        ("power", 2.0),
        ("frequency", 25e6),
        ("channel_current", pytest.approx(150.0)),
        ("frequency", 25),
    ]
    assert main(["power", "2 MHz"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: rf_drive.power is in dBm: unit 'MHz' measures frequency, "
        "but this needs RF power (dBm)"
    )
    assert main(["count", "3 V"]) == 2
    assert "rf_drive.count is a plain number (no unit)" in capsys.readouterr().err
    assert main(["power", "2 furlongs"]) == 2
    assert "unknown unit 'furlongs'" in capsys.readouterr().err
    assert len(applied) == 4  # nothing refused was sent
