"""The GUI path: replies and messages arrive on the Qt thread without blocking it."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6.QtWidgets")


def test_importing_the_bus_does_not_import_qt():
    import subprocess

    code = "import sys, ionpilot.bus; print('PyQt6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_qt_client_and_subscriber(qtbot, settings, ctx, bus, join, dead_endpoint):
    from ionpilot.bus import CommandServer, Publisher, Subscriber
    from ionpilot.gui.busqt import QtCommandClient, QtSubscriber

    server = CommandServer("gui-test", settings, context=ctx)
    endpoint = server.bind("tcp://127.0.0.1:0")
    server.register("rf_drive", "get", lambda req: 25e6, inline=True)
    server.start()
    client = QtCommandClient(settings, endpoint, context=ctx)
    replies: list = []
    for _ in range(20):
        client.request("rf_drive", "get", {"name": "frequency"}, replies.append)
    client.request("nobody", "get", None, replies.append)
    qtbot.waitUntil(lambda: len(replies) == 21, timeout=10_000)
    assert [r.value for r in replies[:20]] == [25e6] * 20
    assert replies[20].code == "unknown_target"
    timed_out: list = []
    dead = QtCommandClient(settings, dead_endpoint, context=ctx)
    dead.request("x", "get", None, timed_out.append, timeout=0.05, retries=1)
    qtbot.waitUntil(lambda: bool(timed_out), timeout=10_000)
    assert timed_out[0].code == "timeout" and "2 attempt(s)" in timed_out[0].message
    dead.close()
    client.close()
    server.close()

    received: list = []
    with Publisher(bus, "drivers", context=ctx) as pub:
        sub = Subscriber(bus, ["tlm."], context=ctx)
        join(pub, sub)
        watcher = QtSubscriber(sub, received.append)
        for i in range(100):
            pub.publish("tlm.qt.x", i)
        qtbot.waitUntil(lambda: len(received) == 100, timeout=10_000)
        watcher.close()
        sub.close()
    assert [m.value for m in received] == list(range(100))
