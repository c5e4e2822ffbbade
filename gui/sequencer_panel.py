"""Sequencer: edit or load OpenQASM, compile, see the pulse schedule per channel, submit a job,
watch the queue, and see results as a histogram with 95 % Wilson error bars.

Everything goes through the sequencer service on the bus (target `sequencer`): `call`
name=compile for the schedule and report, name=simulate for a quick run on the simulated chain,
name=submit for a job on the trap, `list` / `get` for the queue and results. When the service
does not answer, the panel says so.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QSettings, Qt
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ionpilot.bus.codec import Reply
from ionpilot.gui.connection import describe_reply
from ionpilot.gui.context import Context
from ionpilot.gui.style import DIM_TEXT, MONO, TRACE_COLOURS, section_title, severity_colour

EXAMPLE = """OPENQASM 3.0;
include "stdgates.inc";
// Bell pair on ions 0 and 1
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""
KIND_COLOURS = {"pulse": "#4fc3f7", "ttl": "#90a4ae", "pump": "#ba68c8", "detect": "#81c784"}
QUEUE_COLUMNS = ("Job", "State", "Priority", "Shots", "Submitter", "Submitted", "Finished")


def local_time(unix_s: object) -> str:
    """A job's Unix time as the lab's clock shows it (the date too when not today); '—' when
    absent."""
    if not isinstance(unix_s, int | float) or isinstance(unix_s, bool) or unix_s <= 0:
        return "—"
    stamp = time.localtime(unix_s)
    if time.strftime("%Y-%m-%d", stamp) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", stamp)
    return time.strftime("%Y-%m-%d %H:%M:%S", stamp)


class SequencerPanel(QWidget):
    """Editor on the left; timeline, queue and histogram on the right."""

    name = "sequencer"
    title = "Sequencer"

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.schedule: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.service_state = "unknown"
        self._last_poll = -math.inf
        self._shown = False
        self.watch_job = ""  # a submitted job whose result the histogram will show

        self.editor = QPlainTextEdit()
        self.editor.setFont(QFont(MONO, ctx.settings.font_size))
        self.editor.setPlainText(EXAMPLE)
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        load = QPushButton("Load…")
        load.clicked.connect(self._ask_load)
        self.compile_button = QPushButton("Compile (Ctrl+Return)")
        self.compile_button.clicked.connect(self.compile)
        self.run_button = QPushButton("Run on local simulator")
        self.run_button.clicked.connect(self.run_local)
        self.submit_button = QPushButton("Submit job")
        self.submit_button.clicked.connect(self.submit)
        self.shots = QSpinBox()
        self.shots.setRange(1, 100_000)
        self.shots.setValue(1000)
        self.shots.setSuffix(" shots")
        buttons = QHBoxLayout()
        for w in (load, self.compile_button, self.run_button, self.shots, self.submit_button):
            buttons.addWidget(w)
        self.report = QLabel("not compiled yet")
        self.report.setWordWrap(True)
        self.report.setStyleSheet(f"color: {DIM_TEXT};")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(section_title("OPENQASM PROGRAM"))
        left_layout.addWidget(self.editor, 1)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.report)
        left_layout.addWidget(self.status)

        self.timeline = pg.PlotWidget(background="#12151b")
        self.timeline.setTitle("Pulse schedule: one row per channel")
        self.timeline.setLabel("bottom", "time", units="s")
        self.timeline.showGrid(x=True, y=False, alpha=0.25)
        self.timeline.getAxis("left").setWidth(120)
        self.service_label = QLabel("")
        self.service_label.setWordWrap(True)
        self.queue = QTableWidget(0, len(QUEUE_COLUMNS))
        self.queue.setHorizontalHeaderLabels(QUEUE_COLUMNS)
        self.queue.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        qheader = self.queue.horizontalHeader()
        assert qheader is not None
        qheader.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        queue_box = QWidget()
        queue_layout = QVBoxLayout(queue_box)
        queue_layout.setContentsMargins(0, 0, 0, 0)
        queue_layout.addWidget(section_title("JOB QUEUE (sequencer service)"))
        queue_layout.addWidget(self.service_label)
        queue_layout.addWidget(self.queue, 1)
        self.histogram = pg.PlotWidget(background="#12151b")
        self.histogram.setTitle("Results: probability per outcome, 95 % Wilson intervals")
        self.histogram.setLabel("left", "probability")
        self.histogram.setLabel("bottom", "outcome (bit string)")
        self.histogram.setYRange(0, 1.05)
        self.histogram.showGrid(x=False, y=True, alpha=0.25)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.timeline)
        right.addWidget(queue_box)
        right.addWidget(self.histogram)
        right.setSizes([380, 200, 320])
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setSizes([520, 1000])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.splitter)

    # ------------------------------------------------------------------------- compile

    def compile(self) -> None:
        text = self.editor.toPlainText()
        self._say("compiling …", "")
        started = time.perf_counter()
        self.ctx.bus.request(
            self.ctx.settings.sequencer_target,
            "call",
            {"name": "compile", "qasm": text},
            lambda reply: self._on_compiled(
                reply.ok, reply.value if reply.ok else describe_reply(reply), started
            ),
            timeout=30.0,
        )

    def _on_compiled(self, ok: bool, value: Any, started: float) -> None:
        if not ok:
            self._say(f"compile failed — {value}", "MAJOR")
            return
        self.schedule = value["schedule"]
        report = value["report"]
        events = self.schedule["events"] if self.schedule else []
        self.draw_schedule(self.schedule)
        duration = report.get("estimated_duration_s") or 0.0
        self._say("compiled", "OK")
        self.report.setText(
            f"compiled in {(time.perf_counter() - started) * 1e3:.0f} ms: {len(events)} events, "
            f"{report.get('two_qubit_count', 0)} MS gates, {duration * 1e6:.1f} µs; native "
            f"{report.get('native_counts', {})}"
        )

    def draw_schedule(self, schedule: dict[str, Any] | None) -> None:
        plot = self.timeline
        plot.clear()
        if not schedule:
            return
        unit = float(schedule.get("time_unit_s", 1e-9))
        channels: list[str] = list(dict.fromkeys(e["channel"] for e in schedule["events"]))
        rows = {name: i for i, name in enumerate(channels)}
        for kind, colour in KIND_COLOURS.items():
            chosen = [e for e in schedule["events"] if e.get("kind", "pulse") == kind]
            if not chosen:
                continue
            bars = pg.BarGraphItem(
                x0=[e["start_mu"] * unit for e in chosen],
                width=[e["duration_mu"] * unit for e in chosen],
                y=[rows[e["channel"]] for e in chosen],
                height=0.7,
                brush=colour,
                pen=pg.mkPen("#12151b"),
                name=kind,
            )
            plot.addItem(bars)
        plot.getAxis("left").setTicks([[(i, name) for name, i in rows.items()]])
        plot.setYRange(-0.6, len(channels) - 0.4)
        plot.getViewBox().invertY(True)
        legend = plot.addLegend(offset=(-10, 10))
        for kind, colour in KIND_COLOURS.items():
            legend.addItem(pg.BarGraphItem(x=[0], height=[0], width=1, brush=colour), kind)
        plot.autoRange()

    # ----------------------------------------------------------------------------- run

    def run_local(self) -> None:
        text = self.editor.toPlainText()
        shots = self.shots.value()
        self._say(f"running {shots} shots on the simulated chain …", "")
        self.ctx.bus.request(
            self.ctx.settings.sequencer_target,
            "call",
            {"name": "simulate", "qasm": text, "shots": shots},
            lambda reply: self._on_result(
                reply.ok, reply.value if reply.ok else describe_reply(reply)
            ),
            timeout=60.0,
        )

    def _on_result(self, ok: bool, value: Any) -> None:
        if not ok:
            self._say(f"run failed — {value}", "MAJOR")
            return
        self.show_result(value)
        self._say(
            f"{value.get('shots')} shots on {value.get('backend', '?')}: "
            f"{len(value.get('counts', {}))} outcomes",
            "OK",
        )

    def show_result(self, result: dict[str, Any]) -> None:
        self.result = result
        plot = self.histogram
        plot.clear()
        probs: dict[str, float] = {}
        shots = max(1, int(result.get("shots", 1)))
        for key, count in result.get("counts", {}).items():
            probs[key] = count / shots
        keys = sorted(probs)[:64]
        if not keys:
            return
        x = np.arange(len(keys), dtype=float)
        y = np.array([probs[k] for k in keys])
        intervals = result.get("intervals", {})
        lo = np.array([intervals.get(k, [p, p])[0] for k, p in zip(keys, y, strict=True)])
        hi = np.array([intervals.get(k, [p, p])[1] for k, p in zip(keys, y, strict=True)])
        plot.addItem(pg.BarGraphItem(x=x, height=y, width=0.6, brush=TRACE_COLOURS[0]))
        plot.addItem(
            pg.ErrorBarItem(
                x=x, y=y, top=hi - y, bottom=y - lo, beam=0.2, pen=pg.mkPen("#ffffff", width=1.5)
            )
        )
        plot.getAxis("bottom").setTicks([[(i, k) for i, k in enumerate(keys)]])
        plot.setXRange(-0.7, len(keys) - 0.3)
        plot.setYRange(0, 1.05)

    # -------------------------------------------------------------------------- service

    def submit(self) -> None:
        target = self.ctx.settings.sequencer_target
        args = {
            "name": "submit",
            "kind": "user",
            "qasm": self.editor.toPlainText(),
            "shots": self.shots.value(),
        }
        self._say(f"submitting to {target} …", "")
        self.ctx.bus.request(target, "call", args, self._on_submitted)

    def _on_submitted(self, reply: Reply) -> None:
        if reply.ok:
            value = reply.value if isinstance(reply.value, dict) else {}
            self.watch_job = str(value.get("id", ""))
            self._say(f"submitted: job {self.watch_job}", "OK")
            self._poll_queue()
        else:
            self._say(f"not submitted — {describe_reply(reply)}", "MAJOR")
            self._set_service(reply)

    def showEvent(self, event: object) -> None:  # noqa: N802 (Qt's name)
        if not self._shown:  # the example program compiles and runs once, so nothing is blank
            self._shown = True
            self.compile()
            self.run_local()
        super().showEvent(event)  # type: ignore[arg-type]

    def refresh(self) -> None:
        target = self.ctx.settings.sequencer_target
        alive = self.ctx.store.beat_age(target) <= self.ctx.bus.stale_after
        if not alive and self.service_state != "running":
            self.service_label.setText(
                "● sequencer service not running — no heartbeat from "
                f"'{target}'. Compile and local runs work; job submission needs the service."
            )
            self.service_label.setStyleSheet(
                f"color: {severity_colour('MINOR')}; font-weight: bold;"
            )
            self.submit_button.setEnabled(False)
        if time.monotonic() - self._last_poll > 2.0:
            self._poll_queue()

    def _poll_queue(self) -> None:
        self._last_poll = time.monotonic()
        target = self.ctx.settings.sequencer_target
        if not self.ctx.bus.serves(target):
            self.service_state = "absent"
            return
        self.ctx.bus.request(  # user jobs: the clock's, several a second, would crowd them out
            target, "list", {"limit": 50, "kind": "user"}, self._on_queue, timeout=1.0
        )

    def _set_service(self, reply: Reply) -> None:
        self.service_state = "absent"
        self.service_label.setText(f"● sequencer service not answering — {describe_reply(reply)}")
        self.service_label.setStyleSheet(f"color: {severity_colour('MINOR')}; font-weight: bold;")

    def _on_queue(self, reply: Reply) -> None:
        if not reply.ok:
            self._set_service(reply)
            self.submit_button.setEnabled(reply.code not in ("timeout", "unknown_target"))
            return
        self.service_state = "running"
        self.submit_button.setEnabled(True)
        self.service_label.setText("● sequencer service running")
        self.service_label.setStyleSheet(f"color: {severity_colour('OK')}; font-weight: bold;")
        value = reply.value
        jobs = value.get("jobs", []) if isinstance(value, dict) else value
        if not isinstance(jobs, list):
            return
        self.queue.setRowCount(len(jobs))
        for r, job in enumerate(jobs):
            if not isinstance(job, dict):
                continue
            cells = (
                job.get("id", job.get("job_id", "")),
                job.get("state", ""),
                job.get("priority", ""),
                job.get("shots", ""),
                job.get("submitter", ""),
                local_time(job.get("submitted_s")),
                local_time(job.get("finished_s")),
            )
            for c, text in enumerate(cells):
                self.queue.setItem(r, c, QTableWidgetItem(str(text)))
            if job.get("state") == "done" and job.get("id") == self.watch_job:
                self.watch_job = ""
                self.ctx.bus.request(
                    self.ctx.settings.sequencer_target,
                    "get",
                    {"name": "job", "id": str(job["id"])},
                    self._on_job,
                )

    def _on_job(self, reply: Reply) -> None:
        if (
            reply.ok
            and isinstance(reply.value, dict)
            and isinstance(reply.value.get("result"), dict)
        ):
            self.show_result(reply.value["result"])
            self._say(f"job {reply.value.get('id')} done", "OK")
        elif not reply.ok:
            self._say(f"job result not available — {describe_reply(reply)}", "MAJOR")

    # ---------------------------------------------------------------------------- misc

    def _say(self, text: str, severity: str) -> None:
        self.status.setText(text)
        colour = severity_colour(severity) if severity else DIM_TEXT
        self.status.setStyleSheet(f"color: {colour};")

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load OpenQASM", "", "OpenQASM (*.qasm);;All (*)"
        )
        if path:
            self.load(path)

    def load(self, path: str | Path) -> None:
        self.editor.setPlainText(Path(path).read_text(encoding="utf-8"))

    def save_state(self, settings: QSettings) -> None:
        settings.setValue("sequencer/program", self.editor.toPlainText())
        settings.setValue("sequencer/splitter", self.splitter.saveState())

    def restore_state(self, settings: QSettings) -> None:
        program = settings.value("sequencer/program", "", type=str)
        if program:
            self.editor.setPlainText(program)
        state = settings.value("sequencer/splitter")
        if state is not None:
            self.splitter.restoreState(state)
