"""Connection state: a stopped hub shows "disconnected", and the console recovers when it
returns; the layout is remembered between sessions; `ionpilot gui --screenshot` renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labprocs import bus_of  # type: ignore[import-not-found]
from PyQt6.QtCore import QSettings
from PyQt6.QtGui import QImage

from ionpilot.bus import BusSettings, HeartbeatPublisher, Hub
from ionpilot.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def test_stopped_hub_shows_disconnected_and_the_console_recovers(
    qtbot: Any, console_factory: Any
) -> None:
    base = BusSettings(publish_port=0, subscribe_port=0, heartbeat_period=0.1, stale_after=0.6)
    hub = Hub(base).start()
    bus = bus_of(base, hub)
    beat = HeartbeatPublisher(bus, "drivers").start()
    console = console_factory(bus, None)
    try:
        qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=10_000)
        assert "BUS CONNECTED" in console.window.strip.bus.text()
        hub.stop()
        qtbot.waitUntil(lambda: console.bus.state == "disconnected", timeout=5000)
        console.window.tick()
        assert "BUS DISCONNECTED" in console.window.strip.bus.text()
        assert "reconnecting" in console.window.strip.detail.text()
        hub = Hub(bus).start()  # the hub comes back on the same ports
        qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=15_000)
        console.window.tick()
        assert "BUS CONNECTED" in console.window.strip.bus.text()
    finally:
        beat.stop()
        hub.stop()


def test_layout_is_remembered(qtbot: Any, console_factory: Any, tmp_path: Path) -> None:
    bus = BusSettings(publish_port=1, subscribe_port=2)  # nothing there: stays "connecting"
    path = str(tmp_path / "console.ini")
    first = console_factory(bus, None, qsettings=QSettings(path, QSettings.Format.IniFormat))
    first.window.show_panel("health")
    first.window.health.audit_only.setChecked(True)
    first.window.close()
    second = console_factory(bus, None, qsettings=QSettings(path, QSettings.Format.IniFormat))
    assert second.window.tabs.currentWidget() is second.window.health
    assert second.window.health.audit_only.isChecked()


def test_cli_screenshot_renders_a_panel_and_refuses_bad_input(
    qtbot: Any, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "docs" / "clock.png"
    config = str(ROOT / "configs" / "sim-lab.yaml")
    args = ["gui", "--config", config, "--screenshot", str(out), "--panel", "clock"]
    assert cli_main([*args, "--after", "0.3", "--size", "1280x800"]) == 0
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 800)
    assert cli_main([*args, "--after", "-1"]) == 2
    assert cli_main(["gui", "--config", config, "--screenshot", str(tmp_path / "x.jpg")]) == 2
    assert "error:" in capsys.readouterr().err
