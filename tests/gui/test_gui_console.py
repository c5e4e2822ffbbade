"""The console against a live simulated system: panels fill, set-points reach the instrument,
out-of-limit entries never leave, refusals show verbatim, events and health reach the alarms."""

from __future__ import annotations

import socket
import time
from typing import Any

from ionpilot.bus.codec import Reply


def sim_rf_power(live: Any) -> float:
    """The RF level straight from the simulated instrument over its own socket, bypassing
    ionpilot (and pyvisa, whose shared resource manager would close the drivers' sessions)."""
    _, host, port, _ = live.lab.resources()["rf_drive"].split("::")
    with socket.create_connection((host, int(port)), timeout=2.0) as sock:
        sock.sendall(b"SOUR:POW?\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
    return float(reply.decode().strip())


def spy_requests(console: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """Record every command the console sends (and still send it)."""
    sent: list[tuple[str, str, dict[str, Any]]] = []
    original = console.bus.request

    def spy(target: str, method: str, args: Any, callback: Any, **kw: Any) -> None:
        sent.append((target, method, dict(args or {})))
        original(target, method, args, callback, **kw)

    console.bus.request = spy
    return sent


def publish_servo(live: Any, n: int = 40) -> None:
    pub = live.publisher
    pub.publish("servo.clock.state", "locked")
    now = time.time_ns()
    for i in range(n):
        t = now - (n - i) * 1_000_000_000
        aom = 200e6 + 0.01 * i + 0.3 * ((i * 7919) % 13 - 6) / 6
        pub.publish(
            "servo.clock.update",
            {
                "error_hz": 0.1 * (i % 5 - 2),
                "correction_hz": -0.05 * (i % 5 - 2),
                "aom_frequency_hz": aom,
                "drift_hz_per_s": 0.06,
                "n_probes": 10,
            },
            t=t,
        )
        pub.publish("servo.clock.error", 0.1 * (i % 5 - 2), "Hz", t=t)
        pub.publish("servo.clock.correction", -0.05 * (i % 5 - 2), "Hz", t=t)
    pub.publish(
        "servo.clock.optical_frequency",
        {"output_frequency_hz": 688_358_979_309_308.4, "mode_number": 2753435},
    )


def test_panels_fill_with_live_data(qtbot: Any, live: Any, console_factory: Any) -> None:
    console = console_factory(live.bus, live.directory)
    window = console.window
    qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=10_000)
    qtbot.waitUntil(lambda: "tlm.rf_drive.power" in console.store.latest, timeout=10_000)
    # overview: the driver host's heartbeat, and the servo once it speaks
    window.show_panel("overview")
    qtbot.waitUntil(
        lambda: window.overview._beat_tiles["drivers"].value.text() == "alive", timeout=5000
    )
    publish_servo(live)
    qtbot.waitUntil(lambda: window.overview.lock.value.text() == "LOCKED", timeout=5000)
    assert "688" in window.overview.frequency.value.text()
    assert "BUS CONNECTED" in window.strip.bus.text()
    # instruments: live value, unit and limits from describe
    panel = window.show_panel("instruments")
    qtbot.waitUntil(lambda: "rf_drive" in panel.described, timeout=5000)
    panel.refresh()
    item = panel._item("rf_drive", "power")
    assert item.text(2) == "dBm" and "10 dBm" in item.text(4) and item.text(5) == "OK"
    # plots: a chosen topic is charted with its samples
    plots = window.show_panel("plots")
    plots.refresh()
    plots.choose(["tlm.rf_drive.power", "servo.clock.error"])
    qtbot.waitUntil(lambda: plots.charts.frames > 0, timeout=5000)
    x, y = plots.charts.traces["tlm.rf_drive.power"].curve.getData()
    assert x is not None and len(y) >= 1
    # clock: ADEV from the AOM steering, with the QPN line
    clock = window.show_panel("clock")
    qtbot.waitUntil(lambda: clock.adev_curve.getData()[0] is not None, timeout=8000)
    assert clock.qpn_curve.getData()[0] is not None


def test_setpoint_reaches_the_instrument(qtbot: Any, live: Any, console_factory: Any) -> None:
    console = console_factory(live.bus, live.directory)
    panel = console.window.show_panel("instruments")
    qtbot.waitUntil(lambda: "rf_drive" in panel.described, timeout=8000)
    panel.select("rf_drive", "power")
    target = -3.5 if sim_rf_power(live) != -3.5 else -4.5
    panel.entry.setText(f"{target} dBm")
    qtbot.mouseClick(panel.set_button, qtbot_button())
    qtbot.waitUntil(lambda: "set;" in panel.message.text(), timeout=8000)
    assert sim_rf_power(live) == target
    assert panel.sent[-1] == ("rf_drive", "power", target)


def qtbot_button() -> Any:
    from PyQt6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_out_of_limit_entry_shows_the_error_and_sends_nothing(
    qtbot: Any, live: Any, console_factory: Any
) -> None:
    console = console_factory(live.bus, live.directory)
    panel = console.window.show_panel("instruments")
    qtbot.waitUntil(lambda: "rf_drive" in panel.described, timeout=8000)
    sent = spy_requests(console)
    before = sim_rf_power(live)
    panel.select("rf_drive", "power")
    panel.entry.setText("15")
    panel.submit()
    assert "outside the allowed range" in panel.message.text()
    assert "nothing was sent" in panel.message.text()
    assert not [s for s in sent if s[1] == "set"] and panel.sent == []
    assert sim_rf_power(live) == before


def test_bus_refusal_is_shown_verbatim(qtbot: Any, live: Any, console_factory: Any) -> None:
    console = console_factory(live.bus, live.directory)
    panel = console.window.show_panel("instruments")
    qtbot.waitUntil(lambda: "beat_counter" in panel.described, timeout=8000)
    replies: list[Reply] = []
    console.bus.request("beat_counter", "set", {"name": "frequency", "value": 1.0}, replies.append)
    qtbot.waitUntil(lambda: bool(replies), timeout=8000)
    panel.select("beat_counter", "frequency")
    panel.entry.setText("1")
    panel.submit()
    verbatim = f"{replies[0].code}: {replies[0].message}"
    qtbot.waitUntil(lambda: "refused by the bus" in panel.message.text(), timeout=8000)
    assert verbatim in panel.message.text()


def test_events_and_health_reach_the_alarms_and_are_acknowledged(
    qtbot: Any, live: Any, console_factory: Any
) -> None:
    console = console_factory(live.bus, live.directory)
    qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=10_000)
    health = console.window.show_panel("health")
    pub = live.publisher
    pub.publish_event("ion_loss", "fluorescence gone: ion lost", "MAJOR")
    pub.publish("health.ion_present", "MAJOR", status="MAJOR")
    qtbot.waitUntil(lambda: "daemon.ion_loss" in health.visible_alarms(), timeout=2000)
    qtbot.waitUntil(lambda: "ion_present" in health.visible_alarms(), timeout=2000)
    assert health.alarms["ion_present"].active
    assert "ALARM" in console.window.strip.alarms.text()
    # the log finds it by text
    health.search.setText("ion lost")
    assert health.proxy.rowCount() == 1
    # recovery: the signal clears
    pub.publish("health.ion_present", "OK", status="OK")
    qtbot.waitUntil(lambda: not health.alarms["ion_present"].active, timeout=2000)
    # acknowledge: a bus command with the alarm's name, recorded with who sent it
    health.acknowledge("daemon.ion_loss")
    qtbot.waitUntil(lambda: bool(health.alarms["daemon.ion_loss"].acked), timeout=5000)
    assert live.acks[-1]["args"] == {"name": "acknowledge", "signals": ["daemon.ion_loss"]}
    assert live.acks[-1]["client"].startswith("gui:")


def test_simulation_panel_injects_and_restores(qtbot: Any, live: Any, console_factory: Any) -> None:
    console = console_factory(live.bus, live.directory)
    sim = console.window.show_panel("simulation")
    sim.refresh()
    sim.inject("comb_unlock")
    qtbot.waitUntil(lambda: len(sim.replies) == 1, timeout=5000)
    assert sim.replies[0].ok, sim.replies[0]
    assert live.lab.world.comb_locked is False
    sim.targets["restore"].setCurrentText("comb")
    sim.inject("restore")
    qtbot.waitUntil(lambda: len(sim.replies) == 2, timeout=5000)
    assert sim.replies[1].ok and live.lab.world.comb_locked is True
