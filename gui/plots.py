"""Plots: any numeric telemetry topic (or a number inside a record) as a live strip chart.

Traces with the same unit share one plot (x-linked, wall-clock time axis); each redraw hands
pyqtgraph the newest window of a ring buffer, peak-downsampled to the pixels there are, so twenty
traces of ten thousand points stay fluid. Pause freezes the time axis for zooming; the visible
traces export to CSV (every sample in the window) and PNG (what is on screen).
"""

from __future__ import annotations

import csv
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QSettings, Qt, QTimer
from PyQt6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ionpilot.bus.codec import Reply
from ionpilot.gui.context import Context
from ionpilot.gui.store import FloatArray, series_unit
from ionpilot.gui.style import DIM_TEXT, TRACE_COLOURS

WINDOWS = (("30 s", 30.0), ("2 min", 120.0), ("10 min", 600.0), ("1 h", 3600.0), ("all", 0.0))
DEFAULT_SERIES = (
    "servo.clock.error",
    "servo.clock.correction",
    "tlm.beat_counter.frequency",
    "tlm.laser_369.piezo_voltage",
    "tlm.rf_drive.power",
)
SI_UNITS = {"Hz", "V", "A", "W", "s", "m", "V/s", "Hz/s"}
# Filled from the recorder when the console opens, so its plots start with the last hour.
HISTORY_SERIES = (
    *DEFAULT_SERIES,
    "servo.clock.optical_frequency:output_frequency_hz",
    "servo.clock.update:aom_frequency_hz",
)
HISTORY_S = 3600.0
MAX_TRACES = 40


def peak_decimate(
    t: FloatArray, y: FloatArray, lo: float, hi: float, columns: int
) -> tuple[FloatArray, FloatArray]:
    """The samples in [lo, hi] (plus one either side), reduced to a min/max pair per pixel
    column when there are more than two per column: what a strip chart can show, no more."""
    i0 = max(0, int(np.searchsorted(t, lo)) - 1)
    i1 = min(len(t), int(np.searchsorted(t, hi, side="right")) + 1)
    t, y = t[i0:i1], y[i0:i1]
    n = len(t)
    columns = max(16, columns)
    if n <= 2 * columns:
        return t.copy(), y.copy()
    k = n // columns
    head = n - columns * k  # the oldest few stay raw; every bin then holds k samples
    tb = t[head:].reshape(columns, k)
    yb = y[head:].reshape(columns, k)
    out_t = np.empty(head + 2 * columns)
    out_y = np.empty(head + 2 * columns)
    out_t[:head] = t[:head]
    out_y[:head] = y[:head]
    out_t[head::2] = tb[:, 0]
    out_t[head + 1 :: 2] = tb[:, -1]
    out_y[head::2] = yb.min(axis=1)
    out_y[head + 1 :: 2] = yb.max(axis=1)
    return out_t, out_y


class StripCurve(pg.PlotCurveItem):
    """A curve that knows its bounds from the decimation (pyqtgraph would rescan the data on
    every view change, and the view changes every frame)."""

    def set_strip(self, t: FloatArray, y: FloatArray) -> None:
        if len(t):
            self._strip_bounds = ((float(t[0]), float(t[-1])), (float(y.min()), float(y.max())))
        else:
            self._strip_bounds = ((np.nan, np.nan), (np.nan, np.nan))
        self.setData(t, y)

    def dataBounds(  # noqa: N802 (pyqtgraph's name)
        self,
        ax: int,
        frac: float = 1.0,
        orthoRange: object = None,  # noqa: N803
    ) -> tuple[float, float]:
        bounds = getattr(self, "_strip_bounds", None)
        if bounds is None or frac != 1.0 or orthoRange is not None:
            result: tuple[float, float] = super().dataBounds(ax, frac, orthoRange)
            return result
        return bounds[ax]


class Trace:
    """One series on one plot."""

    def __init__(self, series: str, curve: StripCurve, group: str) -> None:
        self.series = series
        self.curve = curve
        self.group = group
        self.y_range = (np.inf, -np.inf)
        self.drawn = -1  # ring.count at the last redraw


class StripCharts(QWidget):
    """The chart area: plots grouped by unit, redrawn on a timer while visible."""

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#12151b")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.traces: dict[str, Trace] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        self.window_s = 120.0
        self.paused = False
        self.frames = 0

    def set_series(self, series: list[str]) -> None:
        """Show exactly these series (in this order), regrouping plots by unit."""
        series = series[:MAX_TRACES]
        if list(self.traces) == series:
            return
        self.graphics.clear()
        self.traces.clear()
        self.plots.clear()
        master: pg.PlotItem | None = None
        for i, name in enumerate(series):
            unit = series_unit(self.ctx.store, name)
            group = self._group(name, unit)
            plot = self.plots.get(group)
            if plot is None:
                axis = pg.DateAxisItem(orientation="bottom")
                plot = self.graphics.addPlot(row=len(self.plots), col=0, axisItems={"bottom": axis})
                quantity = name.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
                if unit in SI_UNITS:
                    plot.setLabel("left", quantity, units=unit, **{"font-size": "11pt"})
                else:
                    plot.setLabel(
                        "left",
                        f"{quantity} ({unit})" if unit else quantity,
                        **{"font-size": "11pt"},
                    )
                plot.addLegend(offset=(8, 4), labelTextSize="10pt")
                plot.disableAutoRange()  # ranges are set once per frame in `redraw`
                plot.getAxis("left").setWidth(110)  # stacked plots line up
                if master is None:
                    master = plot
                    plot.sigXRangeChanged.connect(self._on_zoom)
                else:
                    plot.setXLink(master)
                self.plots[group] = plot
            pen = pg.mkPen(TRACE_COLOURS[i % len(TRACE_COLOURS)], width=1)  # wide pens are slow
            curve = StripCurve(name=name, pen=pen, skipFiniteCheck=True)
            plot.addItem(curve)
            self.traces[name] = Trace(name, curve, group)
        plots = list(self.plots.values())
        for plot in plots[:-1]:
            plot.hideAxis("bottom")  # one time axis, under the last plot
        if plots:
            plots[-1].setLabel("bottom", "local time")

    def _group(self, series: str, unit: str) -> str:
        """Traces share a plot when they share a unit and a magnitude (an error signal of a few
        Hz and a wavemeter reading of 800 THz do not)."""
        ring = self.ctx.store.history.get(series)
        last = ring.last() if ring is not None else None
        size = abs(last[1]) if last is not None else 0.0
        bucket = 0 if size < 1e3 else int(np.log10(size) // 3)
        return f"{unit}@{bucket}"

    def redraw(self, *, force: bool = False) -> None:
        """Hand new samples to the curves and follow the clock (unless paused)."""
        if not self.plots or (self.paused and not force):
            return
        master = next(iter(self.plots.values()))
        if self.paused:
            lo, hi = master.getViewBox().viewRange()[0]
        else:
            hi = time.time()
            lo = hi - self.window_s if self.window_s > 0 else -np.inf
        columns = int(master.getViewBox().width()) or 1000
        history = self.ctx.store.history
        changed = False
        for trace in self.traces.values():
            ring = history.get(trace.series)
            if ring is None or (ring.count == trace.drawn and not force):
                continue
            t, y = ring.view()
            td, yd = peak_decimate(t, y, lo, hi, columns)
            trace.curve.set_strip(td, yd)
            trace.y_range = trace.curve.dataBounds(1) if len(yd) else (np.inf, -np.inf)
            trace.drawn = ring.count
            changed = True
        if self.paused:  # the operator's zoom stays
            return
        if self.window_s <= 0:
            starts = [history[s].view()[0][:1] for s in self.traces if s in history]
            lo = min((float(a[0]) for a in starts if len(a)), default=hi - 60.0)
        master.setXRange(lo, hi, padding=0.0)
        if changed:
            self._fit_y()
            self.frames += 1

    def _fit_y(self) -> None:
        """One y-range per plot from the drawn samples (pyqtgraph's auto-range would rescan
        every curve of a plot each time any one of them changes)."""
        spans: dict[str, tuple[float, float]] = {}
        for trace in self.traces.values():
            a, b = trace.y_range
            old = spans.get(trace.group, (np.inf, -np.inf))
            spans[trace.group] = (min(old[0], a), max(old[1], b))
        for group, (a, b) in spans.items():
            if not np.isfinite(a) or not np.isfinite(b):
                continue
            pad = 0.05 * (b - a) if b > a else (abs(a) * 0.01 or 1.0)
            self.plots[group].setYRange(a - pad, b + pad, padding=0.0)

    def _on_zoom(self, *_: object) -> None:
        if self.paused:  # the operator zooms a frozen chart: show the samples there
            self.redraw(force=True)

    def samples_in_window(self) -> list[tuple[str, str, float, float]]:
        """(series, unit, t_unix_s, value) of every sample on screen, for CSV."""
        rows: list[tuple[str, str, float, float]] = []
        lo, hi = -np.inf, np.inf
        if self.plots:
            (lo, hi) = next(iter(self.plots.values())).getViewBox().viewRange()[0]
        for name in self.traces:
            ring = self.ctx.store.history.get(name)
            if ring is None:
                continue
            unit = series_unit(self.ctx.store, name)
            t, y = ring.view()
            keep = (t >= lo) & (t <= hi)
            rows.extend(
                (name, unit, float(a), float(b)) for a, b in zip(t[keep], y[keep], strict=True)
            )
        return rows


class PlotsPanel(QWidget):
    """Topic picker on the left, strip charts on the right."""

    name = "plots"
    title = "Plots"

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.charts = StripCharts(ctx)
        self._topics_version = -1
        self._chosen: list[str] = []
        self._user_chose = False

        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter topics (Ctrl+F)")
        self.filter.textChanged.connect(self._apply_filter)
        self.topics = QListWidget()
        self.topics.itemChanged.connect(self._on_item_changed)
        self.count_label = QLabel("")
        self.count_label.setStyleSheet(f"color: {DIM_TEXT};")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Topics (tick to plot)"))
        left_layout.addWidget(self.filter)
        left_layout.addWidget(self.topics, 1)
        left_layout.addWidget(self.count_label)

        self.window_box = QComboBox()
        for label, seconds in WINDOWS:
            self.window_box.addItem(label, seconds)
        self.window_box.setCurrentIndex(1)
        self.window_box.currentIndexChanged.connect(self._on_window)
        self.pause_button = QPushButton("Pause (Space)")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self.set_paused)
        csv_button = QPushButton("Export CSV…")
        csv_button.clicked.connect(self._ask_csv)
        png_button = QPushButton("Export PNG…")
        png_button.clicked.connect(self._ask_png)
        clear_button = QPushButton("Untick all")
        clear_button.clicked.connect(self.clear_selection)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Time window"))
        bar.addWidget(self.window_box)
        bar.addWidget(self.pause_button)
        bar.addStretch(1)
        bar.addWidget(clear_button)
        bar.addWidget(csv_button)
        bar.addWidget(png_button)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(bar)
        right_layout.addWidget(self.charts, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 4)
        self.splitter.setSizes([330, 1200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.splitter)

        self.timer = QTimer(self)
        self.timer.setInterval(max(5, round(1000 / ctx.settings.plot_redraw_rate)))
        self.timer.timeout.connect(self.charts.redraw)
        self.history_loaded: dict[str, int] = {}  # series -> stored points put before live ones
        QTimer.singleShot(0, self.load_history)

    def load_history(self) -> None:
        """Ask the recorder for the last hour of the usual series (no recorder: live only)."""
        since = time.time_ns() - int(HISTORY_S * 1e9)
        for series in HISTORY_SERIES:
            args = {"name": "history", "series": series.replace(":", "."), "since_ns": since}
            self.ctx.bus.request(
                "recorder", "get", args, partial(self._on_history, series), timeout=10.0
            )
        args = {"name": "history", "series": "servo.clock.state", "since_ns": since}
        self.ctx.bus.request("recorder", "get", args, self._on_states, timeout=10.0)

    def _on_history(self, series: str, reply: Reply) -> None:
        value = reply.value if reply.ok else None
        if not isinstance(value, dict) or not isinstance(value.get("value"), list):
            return
        t = np.asarray(value["t_ns"], dtype=float) * 1e-9
        y = np.asarray([np.nan if v is None else v for v in value["value"]], dtype=float)
        if len(t) == len(y):
            self.history_loaded[series] = self.ctx.store.backfill(series, t, y)
            self.charts.redraw(force=True)

    def _on_states(self, reply: Reply) -> None:
        value = reply.value if reply.ok else None
        if isinstance(value, dict) and value.get("kind") == "text":
            pairs = [
                (t * 1e-9, v)
                for t, v in zip(value["t_ns"], value["value"], strict=True)
                if isinstance(v, str) and not v.startswith("{")  # not the change records
            ]
            self.ctx.store.backfill_changes(
                "servo.clock.state", [p[0] for p in pairs], [p[1] for p in pairs]
            )

    # ------------------------------------------------------------------------ visibility

    def showEvent(self, event: object) -> None:  # noqa: N802 (Qt's name)
        self.timer.start()
        super().showEvent(event)  # type: ignore[arg-type]

    def hideEvent(self, event: object) -> None:  # noqa: N802
        self.timer.stop()
        super().hideEvent(event)  # type: ignore[arg-type]

    # --------------------------------------------------------------------------- topics

    def refresh(self) -> None:
        store = self.ctx.store
        if store.topics_version == self._topics_version:
            return
        self._topics_version = store.topics_version
        known = {self.topics.item(i).text() for i in range(self.topics.count())}  # type: ignore[union-attr]
        self.topics.blockSignals(True)
        for series in store.numeric_topics():
            if series not in known:
                item = QListWidgetItem(series)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(
                    Qt.CheckState.Checked if series in self._chosen else Qt.CheckState.Unchecked
                )
                self.topics.addItem(item)
        self.topics.sortItems()
        self.topics.blockSignals(False)
        if not self._user_chose:
            defaults = [s for s in DEFAULT_SERIES if s in store.history]
            if defaults and defaults != self._chosen[: len(defaults)]:
                self.choose(defaults, user=False)
        self._sync()
        self._apply_filter()
        self.count_label.setText(
            f"{self.topics.count()} numeric series, {len(self._chosen)} plotted"
        )

    def choose(self, series: list[str], *, user: bool = True) -> None:
        """Plot exactly `series` (ticks follow)."""
        self._user_chose = self._user_chose or user
        self._chosen = list(dict.fromkeys(series))
        self.topics.blockSignals(True)
        for i in range(self.topics.count()):
            item = self.topics.item(i)
            assert item is not None
            item.setCheckState(
                Qt.CheckState.Checked if item.text() in self._chosen else Qt.CheckState.Unchecked
            )
        self.topics.blockSignals(False)
        self._sync()

    def _sync(self) -> None:
        """Chart the chosen series that have data (a unit is known only once data came)."""
        history = self.ctx.store.history
        self.charts.set_series([s for s in self._chosen if s in history])

    def clear_selection(self) -> None:
        self.choose([])

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        chosen = [s for s in self._chosen if s != item.text()]
        if item.checkState() == Qt.CheckState.Checked:
            chosen.append(item.text())
        self.choose(chosen)

    def _apply_filter(self) -> None:
        needle = self.filter.text().strip().lower()
        for i in range(self.topics.count()):
            item = self.topics.item(i)
            assert item is not None
            item.setHidden(bool(needle) and needle not in item.text().lower())

    def _on_window(self) -> None:
        self.charts.window_s = float(self.window_box.currentData())

    def set_paused(self, paused: bool) -> None:
        self.charts.paused = paused
        if self.pause_button.isChecked() != paused:
            self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume (Space)" if paused else "Pause (Space)")

    def toggle_pause(self) -> None:
        self.set_paused(not self.charts.paused)

    # --------------------------------------------------------------------------- export

    def export_csv(self, path: str | Path) -> int:
        rows = self.charts.samples_in_window()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["series", "unit", "t_unix_s", "value"])
            for series, unit, t, y in rows:
                writer.writerow([series, unit, f"{t:.6f}", repr(y)])
        return len(rows)

    def export_png(self, path: str | Path) -> bool:
        return bool(self.charts.graphics.grab().save(str(path)))

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export visible traces", "traces.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def _ask_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export plot image", "plots.png", "PNG (*.png)")
        if path:
            self.export_png(path)

    # ---------------------------------------------------------------------------- state

    def save_state(self, settings: QSettings) -> None:
        settings.setValue("plots/series", self._chosen if self._user_chose else [])
        settings.setValue("plots/window", self.window_box.currentIndex())
        settings.setValue("plots/splitter", self.splitter.saveState())

    def restore_state(self, settings: QSettings) -> None:
        series = settings.value("plots/series", [], type=list)
        if series:
            self._chosen = [str(s) for s in series]
            self._user_chose = True
        index = settings.value("plots/window", 1, type=int)
        if 0 <= index < self.window_box.count():
            self.window_box.setCurrentIndex(index)
        state = settings.value("plots/splitter")
        if state is not None:
            self.splitter.restoreState(state)
