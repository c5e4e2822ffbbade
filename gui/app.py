"""Start the console: a Qt application, the bus link, the window; or render one panel to a PNG
after some seconds and exit (documentation, tests; works with QT_QPA_PLATFORM=offscreen)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq
from PyQt6.QtCore import QEventLoop, QSettings, QTimer
from PyQt6.QtWidgets import QApplication

from ionpilot.bus.directory import Directory
from ionpilot.bus.settings import BusSettings
from ionpilot.gui.connection import BusConnection
from ionpilot.gui.context import Context, LabFacts
from ionpilot.gui.settings import GuiSettings
from ionpilot.gui.store import LabStore
from ionpilot.gui.style import apply_theme
from ionpilot.gui.window import ConsoleWindow

PANEL_NAMES = ("overview", "instruments", "plots", "clock", "health", "sequencer", "simulation")


@dataclass
class Console:
    """A running console: its window, bus link and store (tests drive these directly)."""

    window: ConsoleWindow
    bus: BusConnection
    store: LabStore
    ctx: Context

    def close(self) -> None:
        self.window.close()
        self.bus.close()


def build_console(
    bus_settings: BusSettings,
    directory: Directory | None,
    facts: LabFacts | None = None,
    settings: GuiSettings | None = None,
    *,
    qsettings: QSettings | None = None,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
) -> Console:
    """Wire store, bus link and window (a QApplication must exist)."""
    settings = settings or GuiSettings()
    facts = facts or LabFacts()
    store = LabStore(settings.history_points, settings.max_events)
    bus = BusConnection(
        bus_settings, directory, store, context=context, client_name=f"gui:{settings.operator}"
    )
    ctx = Context(store, bus, settings, facts)
    window = ConsoleWindow(ctx, qsettings)
    bus.start()
    return Console(window, bus, store, ctx)


def ensure_app(font_size: int = 11) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setOrganizationName("ionpilot")
        app.setApplicationName("ionpilot console")
    assert isinstance(app, QApplication)
    apply_theme(app, font_size)
    return app


def run_console(
    bus_settings: BusSettings,
    directory: Directory | None,
    facts: LabFacts,
    settings: GuiSettings | None = None,
    *,
    screenshot: str | None = None,
    panel: str = "overview",
    after: float = 5.0,
    size: tuple[int, int] = (1600, 1000),
) -> int:
    """Run until the window closes, or render `panel` to `screenshot` after `after` s."""
    settings = settings or GuiSettings()
    if screenshot and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = ensure_app(settings.font_size)
    qsettings = None if screenshot else QSettings("ionpilot", "console")
    console = build_console(bus_settings, directory, facts, settings, qsettings=qsettings)
    window = console.window
    code = 0
    if screenshot:
        window.resize(*size)
        window.show_panel(panel)
        window.show()

        def grab() -> None:
            nonlocal code
            try:
                window.tick()
                window.plots.charts.redraw()
                app.processEvents()
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                if not window.grab().save(screenshot):
                    print(f"error: cannot write {screenshot}", file=sys.stderr)
                    code = 1
            finally:  # whatever happens, the command ends
                window.close()
                loop.quit()

        loop = QEventLoop()  # a local loop: the application (maybe a test's) lives on
        QTimer.singleShot(max(0, round(after * 1000)), grab)
        loop.exec()
    else:
        window.show()
        app.exec()
    console.close()
    return code
