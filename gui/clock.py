"""Clock: error signal, corrections, lock-state history, a live Allan deviation against the
quantum-projection-noise line, and the comb-measured frequency; pause/resume/re-acquire.

The Allan deviation is the in-loop one the console can compute from what the daemon publishes:
the fractional AOM steering (`servo.clock.update` → `aom_frequency_hz` / ν₀) with its linear
drift removed. At long τ, a lock at the projection-noise limit follows the QPN line σ·√τ = const
(the CLI hands over the coefficient from the lab file's probe settings).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ionpilot.bus.codec import Reply
from ionpilot.gui.connection import describe_reply
from ionpilot.gui.context import Context
from ionpilot.gui.style import (
    DIM_TEXT,
    LOCK_COLOURS,
    TRACE_COLOURS,
    UNKNOWN_COLOUR,
    severity_colour,
)

LOCK_LEVELS = {"unlocked": 0, "acquiring": 1, "holdover": 2, "locked": 3}
AOM_SERIES = "servo.clock.update:aom_frequency_hz"
ADEV_PERIOD_S = 3.0
MIN_ADEV_POINTS = 16


class DecadeAxis(pg.AxisItem):
    """A log axis labelled at 1, 2 and 5 × 10ⁿ only ("1e-15", "2", "5e3"): pyqtgraph labels
    every minor tick of a log axis, and nine labels a decade overlap (σ_y and τ alike). When a
    decade and a half or more is in view, only the decades keep their labels."""

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self.enableAutoSIPrefix(False)  # the labels carry their own powers of ten

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        if not self.logMode:
            return list(super().tickStrings(values, scale, spacing))
        low, high = self.range
        keep = (1,) if high - low > 1.5 else (1, 2, 5)
        out = []
        for v in values:
            exponent = math.floor(v + 1e-9)
            mantissa = round(10 ** (v - exponent))
            if mantissa == 10:
                exponent, mantissa = exponent + 1, 1
            out.append(_power_label(mantissa, exponent) if mantissa in keep else "")
        return out


def _power_label(mantissa: int, exponent: int) -> str:
    if -2 <= exponent <= 3:
        return f"{mantissa * 10.0**exponent:g}"
    return f"{mantissa}e{exponent}"


def fractional_adev(
    t_s: np.ndarray, f_hz: np.ndarray, nu0_hz: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Overlapping ADEV (octave τ) of f/ν₀ with a linear drift removed; (τ, σ, σ_err) or None."""
    if len(f_hz) < MIN_ADEV_POINTS:
        return None
    import allantools

    dt = float(np.median(np.diff(t_s)))
    if not dt > 0:
        return None
    y = f_hz / nu0_hz
    fit = np.polyfit(t_s - t_s[0], y, 1)
    y = y - np.polyval(fit, t_s - t_s[0])
    taus, sigma, err, _ = allantools.oadev(y, rate=1.0 / dt, data_type="freq", taus="octave")
    keep = np.isfinite(sigma) & (sigma > 0)
    if not keep.any():
        return None
    return np.asarray(taus)[keep], np.asarray(sigma)[keep], np.asarray(err)[keep]


class ClockPanel(QWidget):
    """Four plots and the lock commands."""

    name = "clock"
    title = "Clock"

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._adev_at = -math.inf
        self._adev_count = -1
        self.adev_points = 0

        self.state_label = QLabel("lock: —")
        self.state_label.setStyleSheet("font-size: 16pt; font-weight: bold;")
        self.reply_label = QLabel("")
        self.reply_label.setStyleSheet(f"color: {DIM_TEXT};")
        self.reply_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar = QHBoxLayout()
        bar.addWidget(self.state_label)
        bar.addSpacing(20)
        for label, action, tip in (
            ("Pause lock", "pause", "Hold the AOM on the predicted drift (Ctrl+Shift+P)"),
            ("Resume", "resume", "Resume probing (Ctrl+Shift+R)"),
            ("Re-acquire…", "reacquire", "Search the line again (asks first)"),
        ):
            button = QPushButton(label)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, a=action: self.daemon_call(a))
            bar.addWidget(button)
        bar.addWidget(self.reply_label, 1)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#12151b")
        g = self.graphics
        self.error_plot = g.addPlot(
            row=0, col=0, title="Error signal δν̂", axisItems={"bottom": pg.DateAxisItem()}
        )
        self.error_plot.setLabel("left", "error", units="Hz")
        self.corr_plot = g.addPlot(
            row=0, col=1, title="Corrections (AOM steps)", axisItems={"bottom": pg.DateAxisItem()}
        )
        self.corr_plot.setLabel("left", "correction", units="Hz")
        self.state_plot = g.addPlot(
            row=1, col=0, title="Lock state history", axisItems={"bottom": pg.DateAxisItem()}
        )
        self.state_plot.getAxis("left").setTicks([[(v, k) for k, v in LOCK_LEVELS.items()]])
        self.state_plot.setYRange(-0.3, 3.3)
        self.state_plot.getAxis("left").setWidth(80)
        self.adev_plot = g.addPlot(
            row=1,
            col=1,
            title="Allan deviation (in-loop, AOM steering, drift removed)",
            axisItems={"bottom": DecadeAxis("bottom"), "left": DecadeAxis("left")},
        )
        self.adev_plot.setLogMode(x=True, y=True)
        # before there is an ADEV: a clock's range (τ 1 s … 10⁴ s, σ 10⁻¹⁸ … 10⁻¹⁴), not 0.3 … 3
        self.adev_plot.setRange(xRange=(0.0, 4.0), yRange=(-18.0, -14.0), padding=0.02)
        self.adev_plot.setLabel("bottom", "averaging time τ", units="s")
        self.adev_plot.setLabel("left", "σ_y(τ)")
        self.adev_plot.addLegend(offset=(-10, 10), labelTextSize="10pt")
        self.comb_plot = g.addPlot(
            row=2,
            col=0,
            colspan=2,
            title="Clock output measured by the comb: ν − ν₀",
            axisItems={"bottom": pg.DateAxisItem()},
        )
        self.comb_plot.setLabel("left", "ν − ν₀", units="Hz")
        for plot in (
            self.error_plot,
            self.corr_plot,
            self.state_plot,
            self.adev_plot,
            self.comb_plot,
        ):
            plot.showGrid(x=True, y=True, alpha=0.25)
        self.corr_plot.setXLink(self.error_plot)
        self.state_plot.setXLink(self.error_plot)
        self.comb_plot.setXLink(self.error_plot)
        pen = [pg.mkPen(c, width=1.5) for c in TRACE_COLOURS]
        self.error_curve = self.error_plot.plot(pen=pen[0])
        self.corr_curve = self.corr_plot.plot(pen=pen[1])
        self.state_curve = self.state_plot.plot(pen=pg.mkPen("#e8eaf0", width=2), stepMode="center")
        self.adev_curve = self.adev_plot.plot(
            pen=pen[0], symbol="o", symbolSize=6, symbolBrush=TRACE_COLOURS[0], name="measured"
        )
        self.adev_err = pg.ErrorBarItem(pen=pen[0])
        self.adev_plot.addItem(self.adev_err)
        self.qpn_curve = self.adev_plot.plot(
            pen=pg.mkPen("#ff8a65", width=2, style=Qt.PenStyle.DashLine), name="QPN limit"
        )
        self.comb_curve = self.comb_plot.plot(
            pen=pen[2], symbol="o", symbolSize=5, symbolBrush=TRACE_COLOURS[2]
        )
        self.adev_note = pg.TextItem("", color=DIM_TEXT, anchor=(0, 0))
        self.adev_plot.addItem(self.adev_note)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(bar)
        layout.addWidget(self.graphics, 1)

    # ------------------------------------------------------------------------- commands

    def daemon_call(self, action: str, *, confirm: bool = True) -> None:
        if action == "reacquire" and confirm:
            answer = QMessageBox.question(
                self,
                "Re-acquire the clock line?",
                "The lock searches the line again: the clock is not locked until it is found.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.reply_label.setText(f"daemon {action} …")
        self.ctx.bus.request(
            "daemon", "call", {"name": action}, lambda r: self._on_reply(action, r)
        )

    def _on_reply(self, action: str, reply: Reply) -> None:
        if reply.ok:
            self.reply_label.setText(f"daemon {action}: {reply.value}")
            self.reply_label.setStyleSheet(f"color: {severity_colour('OK')};")
        else:
            self.reply_label.setText(f"daemon {action} refused — {describe_reply(reply)}")
            self.reply_label.setStyleSheet(f"color: {severity_colour('MAJOR')};")

    # -------------------------------------------------------------------------- refresh

    def refresh(self) -> None:
        store = self.ctx.store
        state = store.value("servo.clock.state")
        if isinstance(state, str):
            colour = LOCK_COLOURS.get(state, UNKNOWN_COLOUR)
            self.state_label.setText(f"lock: {state}")
            self.state_label.setStyleSheet(f"font-size: 16pt; font-weight: bold; color: {colour};")
        now = time.time()
        for series, curve in (
            ("servo.clock.error", self.error_curve),
            ("servo.clock.correction", self.corr_curve),
        ):
            ring = store.history.get(series)
            if ring is not None:
                t, y = ring.view()
                curve.setData(t.copy(), y.copy())
        changes = store.changes.get("servo.clock.state")
        if changes:
            ts = [t for t, _ in changes] + [now]
            levels = [LOCK_LEVELS.get(v, 0) for _, v in changes]
            self.state_curve.setData(np.asarray(ts), np.asarray(levels, dtype=float))
        comb = store.history.get("servo.clock.optical_frequency:output_frequency_hz")
        if comb is not None:
            t, y = comb.view()
            self.comb_curve.setData(t.copy(), y - self.ctx.facts.clock_frequency_hz)
        self._refresh_adev()

    def _refresh_adev(self) -> None:
        ring = self.ctx.store.history.get(AOM_SERIES)
        if ring is None or ring.count == self._adev_count:
            return
        if time.monotonic() - self._adev_at < ADEV_PERIOD_S:
            return
        self._adev_at = time.monotonic()
        self._adev_count = ring.count
        t, f = ring.view()
        self.adev_points = len(f)
        result = fractional_adev(t.copy(), f.copy(), self.ctx.facts.clock_frequency_hz)
        if result is None:
            self.adev_note.setText(f"{len(f)} updates: ADEV needs {MIN_ADEV_POINTS}")
            self.adev_note.setPos(0.2, -14.3)  # inside the empty plot's default range
            return
        taus, sigma, err = result
        self.adev_curve.setData(taus, sigma)
        logt, logs = np.log10(taus), np.log10(sigma)
        upper = np.log10(sigma + err) - logs
        lower = logs - np.log10(np.maximum(sigma - err, sigma * 1e-3))
        self.adev_err.setData(x=logt, y=logs, top=upper, bottom=lower)
        coefficient = self.ctx.facts.qpn_coefficient
        if coefficient:
            span = np.array([taus[0], taus[-1] * 10])
            self.qpn_curve.setData(span, coefficient / np.sqrt(span))
        self.adev_note.setText(f"{len(f)} servo updates")
        self.adev_note.setPos(logt[0], logs.min())
