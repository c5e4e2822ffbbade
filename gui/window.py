"""The console window: an always-visible status strip (bus, lock, health, alarms) above the
panels, keyboard shortcuts, and a layout remembered between sessions (QSettings)."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from PyQt6.QtCore import QByteArray, QSettings, Qt, QTimer
from PyQt6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ionpilot.gui.clock import ClockPanel
from ionpilot.gui.connection import CONNECTED, CONNECTING
from ionpilot.gui.context import Context
from ionpilot.gui.health import Alarm, HealthPanel
from ionpilot.gui.instruments import InstrumentsPanel
from ionpilot.gui.overview import OverviewPanel, health_severity
from ionpilot.gui.plots import PlotsPanel
from ionpilot.gui.sequencer_panel import SequencerPanel
from ionpilot.gui.simulation import SimulationPanel
from ionpilot.gui.store import severity_rank
from ionpilot.gui.style import (
    DIM_TEXT,
    LOCK_COLOURS,
    UNKNOWN_COLOUR,
    badge,
    format_age,
    severity_colour,
)

log = logging.getLogger(__name__)

SHORTCUTS = (
    (
        "Ctrl+1 … Ctrl+7",
        "switch panel (Overview, Instruments, Plots, Clock, Health, Sequencer, Simulation)",
    ),
    ("F5", "re-read instrument limits and states"),
    ("F6", "read once every instrument parameter the lab file does not poll"),
    ("Ctrl+F", "search / filter in the current panel"),
    ("Space", "pause or resume the strip charts (Plots)"),
    ("Ctrl+E", "export the visible traces to CSV (Plots)"),
    ("Ctrl+K", "acknowledge the selected alarms, or all when none is selected (Health)"),
    ("Ctrl+Return", "compile the program (Sequencer)"),
    ("Ctrl+Shift+P / Ctrl+Shift+R", "pause / resume the clock lock"),
    ("F1", "this list"),
    ("Ctrl+Q", "quit"),
)


def worst_of(alarms: list[Alarm]) -> str:
    return max((a.severity for a in alarms), key=severity_rank, default="OK")


class Panel(Protocol):
    name: str
    title: str

    def refresh(self) -> None: ...


class StatusStrip(QWidget):
    """Bus connection, lock and health: visible whatever panel is open."""

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(12)
        self.lab = QLabel(ctx.facts.name)
        self.lab.setStyleSheet("font-size: 14pt; font-weight: bold;")
        self.bus = QLabel()
        self.lock = QLabel()
        self.health = QLabel()
        self.alarms = QLabel()
        self.detail = QLabel()
        self.detail.setStyleSheet(f"color: {DIM_TEXT};")
        self.clock = QLabel()
        self.clock.setStyleSheet("font-size: 13pt;")
        for w in (self.bus, self.lock, self.health, self.alarms):
            w.setMinimumHeight(30)
        layout.addWidget(self.lab)
        layout.addWidget(self.bus)
        layout.addWidget(self.lock)
        layout.addWidget(self.health)
        layout.addWidget(self.alarms)
        layout.addWidget(self.detail, 1)
        layout.addWidget(self.clock)

    def refresh(
        self, active_alarms: int, worst: str, unacknowledged: int = 0, worst_unacked: str = "OK"
    ) -> None:
        """`active_alarms`: signals in alarm now; `unacknowledged`: rows nobody acknowledged yet
        (cleared but latched alarms, events)."""
        bus = self.ctx.bus
        store = self.ctx.store
        if bus.state == CONNECTED:
            badge(self.bus, "BUS CONNECTED", severity_colour("OK"))
            self.detail.setText(f"{bus.rate:,.0f} msg/s · {len(store.latest)} topics")
        elif bus.state == CONNECTING:
            badge(self.bus, "BUS CONNECTING", UNKNOWN_COLOUR)
            self.detail.setText(
                f"waiting for the hub at {bus.settings.host}:{bus.settings.subscribe_port}"
            )
        else:
            badge(self.bus, "BUS DISCONNECTED", severity_colour("MAJOR"))
            silence = store.silence()
            heard = (
                f"no message for {format_age(silence)}"
                if silence != float("inf")
                else "never heard"
            )
            self.detail.setText(
                f"{heard} · reconnecting to {bus.settings.host}:{bus.settings.subscribe_port}"
                f" (attempt {bus.reconnects + 1}, next in {bus.seconds_to_retry():.0f} s)"
            )
        state = store.value("servo.clock.state")
        stale = store.age("servo.clock.state") > bus.stale_after
        if isinstance(state, str):
            colour = UNKNOWN_COLOUR if stale else LOCK_COLOURS.get(state, UNKNOWN_COLOUR)
            badge(self.lock, f"LOCK {state.upper()}" + (" (stale)" if stale else ""), colour)
        else:
            badge(self.lock, "LOCK —", UNKNOWN_COLOUR)
        agg = store.latest.get("health.aggregate")
        if agg is not None:
            sev = health_severity(agg.value, agg.status)
            badge(self.health, f"HEALTH {sev}", severity_colour(sev))
        else:
            badge(self.health, "HEALTH —", UNKNOWN_COLOUR)
        if active_alarms:
            text = f"{active_alarms} ALARM{'S' if active_alarms > 1 else ''}"
            badge(
                self.alarms,
                text + (f" · {unacknowledged} TO ACK" if unacknowledged else ""),
                severity_colour(worst),
            )
        elif unacknowledged:  # nothing in alarm now, but something happened nobody has seen
            badge(self.alarms, f"{unacknowledged} TO ACKNOWLEDGE", severity_colour(worst_unacked))
        else:
            badge(self.alarms, "NO ALARMS", severity_colour("OK"))
        self.clock.setText(time.strftime("%H:%M:%S"))


class ConsoleWindow(QMainWindow):
    """Status strip, panels as tabs, shortcuts; `panel(name)` for tests and screenshots."""

    def __init__(self, ctx: Context, settings: QSettings | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.qsettings = settings
        self.setWindowTitle(f"ionpilot — {ctx.facts.name}")
        self.strip = StatusStrip(ctx)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.overview = OverviewPanel(ctx)
        self.instruments = InstrumentsPanel(ctx)
        self.plots = PlotsPanel(ctx)
        self.clock = ClockPanel(ctx)
        self.health = HealthPanel(ctx)
        self.sequencer = SequencerPanel(ctx)
        self.simulation = SimulationPanel(ctx)
        self.panels: list[QWidget] = [
            self.overview,
            self.instruments,
            self.plots,
            self.clock,
            self.health,
            self.sequencer,
            self.simulation,
        ]
        for i, panel in enumerate(self.panels, start=1):
            self.tabs.addTab(panel, f"{panel.title}  ({i})")  # type: ignore[attr-defined]
        self.tabs.currentChanged.connect(lambda _: self.tick())
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.strip)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self._shortcuts()
        self.failed_panels: dict[str, str] = {}
        self.timer = QTimer(self)
        self.timer.setInterval(max(20, round(1000 / ctx.settings.table_refresh_rate)))
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        ctx.bus.state_changed.connect(lambda _: self.tick())
        self.restore_layout()

    # ----------------------------------------------------------------------------- panels

    def panel(self, name: str) -> QWidget:
        for panel in self.panels:
            if panel.name == name:  # type: ignore[attr-defined]
                return panel
        known = ", ".join(p.name for p in self.panels)  # type: ignore[attr-defined]
        raise KeyError(f"no panel {name!r} (panels: {known})")

    def show_panel(self, name: str) -> QWidget:
        panel = self.panel(name)
        self.tabs.setCurrentWidget(panel)
        return panel

    def tick(self) -> None:
        """Refresh the strip and the visible panel (the others refresh when shown)."""
        self.health.ingest()
        alarms = self.health.alarms.values()
        active = [a for a in alarms if a.active and a.from_health]  # in alarm now, acked or not
        unacked = [a for a in alarms if not a.acked]  # events, and alarms latched at the monitor
        self.strip.refresh(len(active), worst_of(active), len(unacked), worst_of(unacked))
        current = self.tabs.currentWidget()
        if current is None:
            return
        try:
            current.refresh()  # type: ignore[attr-defined]
        except Exception as exc:  # one panel's bug must not take the console down
            name = current.name  # type: ignore[attr-defined]
            if name not in self.failed_panels:
                log.exception("panel %s failed to refresh", name)
            self.failed_panels[name] = f"{type(exc).__name__}: {exc}"
            self.statusBar().showMessage(f"panel {name} failed: {self.failed_panels[name]}")  # type: ignore[union-attr]

    # -------------------------------------------------------------------------- shortcuts

    def _shortcuts(self) -> None:
        def add(keys: str, action: object) -> None:
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.activated.connect(action)  # type: ignore[arg-type]

        for i in range(len(self.panels)):
            add(f"Ctrl+{i + 1}", lambda i=i: self.tabs.setCurrentIndex(i))
        add("F5", self.instruments.describe_all)
        add("F6", self.instruments.read_unpolled)
        add("Ctrl+F", self._focus_search)
        add("Ctrl+E", self._export_csv)
        add("Ctrl+K", self.health.acknowledge_selected)
        add("Ctrl+Return", self.sequencer.compile)
        add("Ctrl+Shift+P", lambda: self.clock.daemon_call("pause"))
        add("Ctrl+Shift+R", lambda: self.clock.daemon_call("resume"))
        add("F1", self._help)
        add("Ctrl+Q", self.close)
        space = QShortcut(QKeySequence(Qt.Key.Key_Space), self.plots)
        space.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        space.activated.connect(self.plots.toggle_pause)

    def _focus_search(self) -> None:
        current = self.tabs.currentWidget()
        if current is self.plots:
            self.plots.filter.setFocus()
        elif current is self.health:
            self.health.search.setFocus()
        elif current is self.instruments:
            self.instruments.entry.setFocus()

    def _export_csv(self) -> None:
        if self.tabs.currentWidget() is self.plots:
            self.plots._ask_csv()

    def _help(self) -> None:
        rows = "".join(
            f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in SHORTCUTS
        )
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{rows}</table>")

    # ----------------------------------------------------------------------------- layout

    def restore_layout(self) -> None:
        s = self.qsettings
        if s is None:
            return
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        tab = s.value("window/tab", 0, type=int)
        if 0 <= tab < self.tabs.count():
            self.tabs.setCurrentIndex(tab)
        for panel in self.panels:
            restore = getattr(panel, "restore_state", None)
            if restore is not None:
                restore(s)

    def save_layout(self) -> None:
        s = self.qsettings
        if s is None:
            return
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/tab", self.tabs.currentIndex())
        for panel in self.panels:
            save = getattr(panel, "save_state", None)
            if save is not None:
                save(s)
        s.sync()

    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802
        self.save_layout()
        self.timer.stop()
        super().closeEvent(event)
