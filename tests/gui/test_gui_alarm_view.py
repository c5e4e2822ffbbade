"""How the alarm table and the status strip read to an operator, from messages put straight into
the console's store (no lab): an active alarm is a filled pill with legible text, a cleared one
keeps its severity and its reason, dimmed; events say `event`; the strip tells "in alarm now"
from "to acknowledge"; the acknowledge button takes the selection, or everything."""

from __future__ import annotations

import socket
import time
from typing import Any

from PyQt6.QtCore import Qt

from ionpilot.bus.codec import Event, Telemetry
from ionpilot.bus.settings import BusSettings
from ionpilot.gui.style import SEVERITY_COLOURS, UNKNOWN_COLOUR, relative_luminance, text_on

SIGNAL = "servo.ion.fluorescence"


def unused_bus() -> BusSettings:
    """Ports nobody listens on (the console stays "connecting"; the test feeds its store)."""
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return BusSettings(publish_port=ports[0], subscribe_port=ports[1])


def health(store: Any, severity: str, latched: str, value: float, reason: str) -> None:
    fields = {
        "severity": severity,
        "reason": reason,
        "value": value,
        "latched": latched,
        "acknowledged_by": "",
    }
    store.ingest(Telemetry(1, time.time_ns(), "daemon", fields, topic=f"health.{SIGNAL}"))


def row(panel: Any, key: str) -> dict[str, str]:
    table = panel.table
    r = next(r for r in range(table.rowCount()) if table.item(r, 1).text() == key)
    sev = table.item(r, 0)
    fill = sev.background()
    return {
        "index": str(r),
        "severity": sev.text(),
        "fill": fill.color().name() if fill.style() != Qt.BrushStyle.NoBrush else "",
        "text": sev.foreground().color().name(),
        "detail": table.item(r, 2).text(),
        "state": table.item(r, 6).text(),
    }


def contrast(a: str, b: str) -> float:
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_gui_pill_text_is_legible_on_every_colour() -> None:
    for colour in [*SEVERITY_COLOURS.values(), UNKNOWN_COLOUR]:
        assert contrast(colour, text_on(colour)) >= 4.5, colour


def test_gui_alarm_rows_and_strip_read_right(qtbot: Any, console_factory: Any) -> None:
    console = console_factory(unused_bus(), None)
    window, store = console.window, console.store
    panel = window.show_panel("health")
    health(store, "MAJOR", "MAJOR", 460.0, "below LOLO 3000")
    store.ingest(
        Event(
            1,
            time.time_ns(),
            "daemon",
            "recovery_trip",
            "ion_loss tripped",
            "MINOR",
            {},
            "evt.daemon.recovery_trip",
        )
    )
    window.tick()
    alarm = row(panel, SIGNAL)
    assert alarm["index"] == "0" and alarm["state"] == "active"
    assert alarm["fill"] == SEVERITY_COLOURS["MAJOR"] and alarm["text"] == "#ffffff"
    event = row(panel, "daemon.recovery_trip")
    assert event["state"] == "event" and event["text"] == text_on(SEVERITY_COLOURS["MINOR"])
    assert window.strip.alarms.text() == "1 ALARM · 2 TO ACK"

    # the signal recovers; the monitor keeps it latched until someone acknowledges it
    health(store, "OK", "MAJOR", 21000.0, "within limits")
    window.tick()
    alarm = row(panel, SIGNAL)
    assert alarm["index"] == "0", "the worst thing that happened stays on top"
    assert (alarm["severity"], alarm["state"], alarm["fill"]) == ("MAJOR", "cleared", "")
    assert alarm["text"] == SEVERITY_COLOURS["MAJOR"]
    assert "latched until acknowledged" in alarm["detail"] and "below LOLO" in alarm["detail"]
    assert window.strip.alarms.text() == "2 TO ACKNOWLEDGE"

    # acknowledge: nothing selected means everything shown; a selection means just that
    sent: list[str] = []
    # (the plots' own requests, e.g. the recorder's history at open, are not acknowledgements)
    console.bus.request = lambda target, method, args, callback, **kw: (
        sent.append(args["signals"][0]) if "signals" in args else None
    )
    assert panel.ack_button.text() == "Acknowledge all (Ctrl+K)"
    panel.table.selectRow(1)
    assert panel.ack_button.text() == "Acknowledge selected (Ctrl+K)"
    panel.acknowledge_selected()
    assert sent == ["daemon.recovery_trip"]
    panel.table.clearSelection()
    panel.acknowledge_selected()
    assert sorted(sent[1:]) == ["daemon.recovery_trip", SIGNAL]
