"""Instruments: every instrument and parameter with live value, unit, age, limits and status;
set-points checked against the limits before anything is sent, refusals shown verbatim.

Limits come from the driver host (`describe` → `allowed` [min, max]); the console refuses an
out-of-limit entry itself (nothing leaves), and the host checks again (the console is a
convenience, never the safety). A set that is accepted but not yet reached — a slewing DC
electrode, a ramping supply — shows "ramping → target" until the reading gets there.

A parameter the lab file does not poll has no telemetry: each is read once (`get`) when the panel
first shows an instrument, and again on request (F6), so the tree shows a value and its age
instead of "—" and "never".
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QBrush, QColor
from PyQt6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ionpilot.bus.codec import Reply, Value
from ionpilot.gui.connection import describe_reply
from ionpilot.gui.context import Context
from ionpilot.gui.style import (
    DIM_TEXT,
    SEVERITY_COLOURS,
    TEXT,
    UNKNOWN_COLOUR,
    format_age,
    format_value,
    severity_colour,
)

COLUMNS = ("Instrument / parameter", "Value", "Unit", "Age", "Allowed range", "Status", "Set-point")
COL_VALUE, COL_UNIT, COL_AGE, COL_LIMITS, COL_STATUS, COL_SET = range(1, 7)
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")
_SI = {"T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3, "": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9}
READ_ONCE = "read once"  # the status of an unpolled parameter read on request
READ_OK = ("OK", "STALE", "")  # a host's status that still means the read itself worked
_BOOLS = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


class EntryError(ValueError):
    """An entry the console refuses before sending (the message says why)."""


def parse_setpoint(text: str, unit: str) -> float:
    """`2`, `2.5 dBm`, `25 MHz`, `150 mA` → a number in the parameter's own unit."""
    match = _NUMBER.match(text)
    if match is None:
        raise EntryError(f"'{text.strip()}' is not a number")
    number = float(match.group(1))
    suffix = match.group(2)
    if not suffix or suffix == unit:
        return number
    if unit and suffix.endswith(unit) and suffix[: -len(unit)] in _SI:
        return number * _SI[suffix[: -len(unit)]]
    raise EntryError(f"unit '{suffix}' does not match the parameter's unit '{unit or 'none'}'")


def check_limits(name: str, value: float, allowed: list[Any] | None, unit: str) -> None:
    if not math.isfinite(value):
        raise EntryError(f"{name} must be a finite number")
    if not allowed or len(allowed) != 2:
        return
    lo, hi = allowed
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise EntryError(
            f"{name} = {format_value(value, unit)} is outside the allowed range "
            f"{format_limits(allowed, unit)}; nothing was sent"
        )


def format_limits(allowed: list[Any] | None, unit: str) -> str:
    if not allowed or len(allowed) != 2:
        return ""
    lo, hi = allowed
    lo_text = "−∞" if lo is None else format_value(lo, unit)
    hi_text = "+∞" if hi is None else format_value(hi, unit)
    return f"{lo_text} … {hi_text}"


@dataclass
class Ramp:
    """A set-point accepted by the host whose reading has not arrived yet."""

    target: float
    started: float


class InstrumentsPanel(QWidget):
    """The instrument tree and the set-point box."""

    name = "instruments"
    title = "Instruments"

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.described: dict[str, dict[str, Any]] = {}
        self.ramps: dict[str, Ramp] = {}
        self.sent: list[tuple[str, str, Value]] = []  # every set that left the console
        self._items: dict[str, QTreeWidgetItem] = {}
        self._last_describe = -math.inf
        self._selected: tuple[str, str] | None = None
        # unpolled parameters read on request: key -> (value, wall time s, status)
        self.read_once: dict[str, tuple[Any, float, str]] = {}
        self._read_pending: set[str] = set()
        self._read_asked: set[str] = set()  # instruments whose unpolled parameters were read

        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        header = self.tree.header()
        assert header is not None
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for col in (COL_VALUE, COL_LIMITS, COL_SET):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        for col in (COL_UNIT, COL_AGE, COL_STATUS):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.currentItemChanged.connect(self._on_select)

        box = QGroupBox("Set a value")
        grid = QGridLayout(box)
        self.target_label = QLabel("select a parameter in the tree")
        self.target_label.setStyleSheet("font-weight: bold;")
        self.limits_label = QLabel("")
        self.limits_label.setStyleSheet(f"color: {DIM_TEXT};")
        self.entry = QLineEdit()
        self.entry.setPlaceholderText("value, e.g. 2.5 or 25 MHz")
        self.entry.returnPressed.connect(self.submit)
        self.set_button = QPushButton("Set")
        self.set_button.setToolTip("Send the set-point (Enter)")
        self.set_button.clicked.connect(self.submit)
        self.refresh_button = QPushButton("Re-read limits (F5)")
        self.refresh_button.clicked.connect(self.describe_all)
        self.read_button = QPushButton("Read unpolled now (F6)")
        self.read_button.setToolTip(
            "read once every parameter the lab file does not poll (it has no telemetry)"
        )
        self.read_button.clicked.connect(self.read_unpolled)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setMinimumHeight(48)
        grid.addWidget(self.target_label, 0, 0, 1, 3)
        grid.addWidget(self.limits_label, 1, 0, 1, 3)
        row = QHBoxLayout()
        row.addWidget(self.entry, 1)
        row.addWidget(self.set_button)
        row.addWidget(self.refresh_button)
        row.addWidget(self.read_button)
        grid.addLayout(row, 2, 0, 1, 3)
        grid.addWidget(self.message, 3, 0, 1, 3)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.tree)
        splitter.addWidget(box)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        self.splitter = splitter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(splitter)
        self._enable_entry(False)

    # ---------------------------------------------------------------------------- describe

    def describe_all(self) -> None:
        self._last_describe = time.monotonic()
        for name in self.ctx.bus.instruments():
            self.ctx.bus.request(name, "describe", {}, partial(self._on_describe, name))

    def _on_describe(self, name: str, reply: Reply) -> None:
        if reply.ok and isinstance(reply.value, dict):
            self.described[name] = reply.value
            if name not in self._read_asked and self.isVisible():
                self.read_unpolled([name])  # the first time the panel shows this instrument
        else:
            self.described[name] = {"state": "no answer", "last_error": describe_reply(reply)}
        self._refresh_selection_box()

    def showEvent(self, event: Any) -> None:  # noqa: N802
        super().showEvent(event)
        unread = [n for n in self.described if n not in self._read_asked]
        if unread:
            self.read_unpolled(unread)

    def unpolled(self, inst: str) -> list[str]:
        """Parameters of `inst` that no poll reads (the driver host's `describe` gives no
        `poll_s`): their only values are the reads the console asks for."""
        params = self.described.get(inst, {}).get("parameters", {}) or {}
        return [
            p for p, entry in params.items() if isinstance(entry, dict) and "poll_s" not in entry
        ]

    def read_unpolled(self, instruments: list[str] | None = None) -> int:
        """`get` each unpolled parameter once (those of `instruments`, default all described);
        returns how many reads were sent. A read already under way is not sent again."""
        sent = 0
        for inst in instruments if instruments is not None else list(self.described):
            self._read_asked.add(inst)
            for pname in self.unpolled(inst):
                key = f"{inst}.{pname}"
                if key in self._read_pending:
                    continue
                self._read_pending.add(key)
                self.ctx.bus.request(
                    inst, "get", {"name": pname}, partial(self._on_read, inst, pname)
                )
                sent += 1
        if instruments is None:
            self._say(f"reading {sent} unpolled parameters once …", "")
        return sent

    def _on_read(self, inst: str, pname: str, reply: Reply) -> None:
        key = f"{inst}.{pname}"
        self._read_pending.discard(key)
        if reply.ok:
            value = reply.value.get("value") if isinstance(reply.value, dict) else reply.value
            self.read_once[key] = (value, time.time(), "OK")
        else:
            self.read_once[key] = (None, time.time(), describe_reply(reply))

    # ----------------------------------------------------------------------------- refresh

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_describe > self.ctx.settings.describe_period:
            self.describe_all()
        store = self.ctx.store
        instruments = list(dict.fromkeys([*self.ctx.bus.instruments(), *self._seen_instruments()]))
        for inst in instruments:
            info = self.described.get(inst, {})
            top = self._item(inst, None)
            state = str(info.get("state", "not described yet"))
            top.setText(COL_VALUE, f"{info.get('model', '')}  {state}".strip())
            top.setText(COL_STATUS, state)
            colour = (
                SEVERITY_COLOURS["OK"]
                if state == "connected"
                else SEVERITY_COLOURS["MAJOR"]
                if state in ("disconnected", "no answer")
                else UNKNOWN_COLOUR
            )
            top.setForeground(COL_STATUS, QBrush(QColor(colour)))
            top.setToolTip(COL_STATUS, str(info.get("last_error", "")))
            params: dict[str, Any] = dict(info.get("parameters", {}) or {})
            for topic in store.topics(f"tlm.{inst}."):
                params.setdefault(topic.removeprefix(f"tlm.{inst}."), {})
            for pname in sorted(params):
                self._refresh_param(inst, pname, params[pname])
        self._refresh_selection_box(live_only=True)

    def _seen_instruments(self) -> list[str]:
        return sorted({t.split(".")[1] for t in self.ctx.store.topics("tlm.") if t.count(".") >= 2})

    def _item(self, inst: str, param: str | None) -> QTreeWidgetItem:
        key = inst if param is None else f"{inst}.{param}"
        item = self._items.get(key)
        if item is None:
            if param is None:
                item = QTreeWidgetItem([inst])
                font = item.font(0)
                font.setBold(True)
                item.setFont(0, font)
                self.tree.addTopLevelItem(item)
                item.setExpanded(True)
            else:
                parent = self._item(inst, None)
                item = QTreeWidgetItem([param])
                parent.addChild(item)
                parent.sortChildren(0, Qt.SortOrder.AscendingOrder)
            item.setData(0, Qt.ItemDataRole.UserRole, (inst, param))
            self._items[key] = item
        return item

    def _refresh_param(self, inst: str, pname: str, entry: dict[str, Any]) -> None:
        item = self._item(inst, pname)
        store = self.ctx.store
        topic = f"tlm.{inst}.{pname}"
        latest = store.latest.get(topic)
        unit = str(entry.get("unit", "") or (latest.unit if latest else ""))
        read = self.read_once.get(f"{inst}.{pname}")
        last = entry.get("last") or {}
        if latest is not None:
            value, status, age = latest.value, latest.status, store.age(topic)
        elif read is not None and not (
            isinstance(last.get("t"), int) and last["t"] > read[1] * 1e9
        ):
            value, read_at, status = read
            age = time.time() - read_at
            if status != "OK":  # the refusal, in the tooltip; the status column says so
                item.setToolTip(COL_STATUS, status)
                status = "NO READ"
        else:
            value, status = last.get("value"), str(last.get("status", ""))
            age = time.time() - last["t"] * 1e-9 if isinstance(last.get("t"), int) else math.inf
        if isinstance(value, float) and math.isnan(value) and status in ("OK", ""):
            status = "INVALID"  # NaN is no reading, whatever the record's status says
        if entry and "poll_s" not in entry and value is not None and status in READ_OK:
            status = READ_ONCE  # not polled: a value read on request, with its age, not "stale"
        elif age > self.ctx.bus.stale_after * 3 and latest is not None and status == "OK":
            status = "STALE"
        item.setText(COL_VALUE, _plain(value))
        item.setText(COL_UNIT, unit)
        item.setText(COL_AGE, format_age(age))
        item.setText(COL_LIMITS, format_limits(entry.get("allowed"), unit))
        item.setText(COL_STATUS, status or "—")
        status_colour = DIM_TEXT if status == READ_ONCE else severity_colour(status)
        item.setForeground(COL_STATUS, QBrush(QColor(status_colour)))
        value_colour = TEXT if status in ("OK", "", READ_ONCE) else severity_colour(status)
        item.setForeground(COL_VALUE, QBrush(QColor(value_colour)))
        key = f"{inst}.{pname}"
        ramp = self.ramps.get(key)
        if ramp is not None:
            reached = isinstance(value, int | float) and math.isclose(
                float(value), ramp.target, rel_tol=1e-6, abs_tol=1e-9
            )
            if reached or time.monotonic() - ramp.started > 300:
                del self.ramps[key]
                item.setText(COL_SET, format_value(ramp.target, unit) + " ✓" if reached else "")
            else:
                item.setText(COL_SET, f"ramping → {format_value(ramp.target, unit)}")
        item.setData(COL_UNIT, Qt.ItemDataRole.UserRole, entry)

    # --------------------------------------------------------------------------- selection

    def _on_select(self, item: QTreeWidgetItem | None, _: QTreeWidgetItem | None) -> None:
        data = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        if data is None or data[1] is None:
            self._selected = None
            self.target_label.setText("select a parameter in the tree")
            self.limits_label.setText("")
            self._enable_entry(False)
            return
        self._selected = (str(data[0]), str(data[1]))
        self.message.setText("")
        self._refresh_selection_box()

    def select(self, instrument: str, parameter: str) -> None:
        """Select a parameter (tests, and keyboard users who know the name)."""
        self.refresh()
        self.tree.setCurrentItem(self._item(instrument, parameter))

    def _entry_of(self, inst: str, pname: str) -> dict[str, Any]:
        params = self.described.get(inst, {}).get("parameters", {}) or {}
        entry = params.get(pname, {})
        return entry if isinstance(entry, dict) else {}

    def _refresh_selection_box(self, live_only: bool = False) -> None:
        if self._selected is None:
            return
        inst, pname = self._selected
        entry = self._entry_of(inst, pname)
        unit = str(entry.get("unit", ""))
        latest = self.ctx.store.latest.get(f"tlm.{inst}.{pname}")
        now_text = format_value(latest.value, unit) if latest is not None else "no reading yet"
        self.target_label.setText(f"{inst}.{pname}   (now {now_text})")
        if live_only:
            return
        limits = format_limits(entry.get("allowed"), unit)
        if limits:
            self.limits_label.setText(
                f"allowed {limits}   ·   checked here before sending, and again by the driver host"
            )
        elif entry:
            self.limits_label.setText(
                "no limits published for this parameter: the driver host decides"
            )
        else:
            self.limits_label.setText("not described by the driver host (yet)")
        self._enable_entry(True)

    def _enable_entry(self, on: bool) -> None:
        self.entry.setEnabled(on)
        self.set_button.setEnabled(on)

    # ------------------------------------------------------------------------------- set

    def submit(self) -> None:
        if self._selected is None:
            return
        inst, pname = self._selected
        entry = self._entry_of(inst, pname)
        unit = str(entry.get("unit", ""))
        text = self.entry.text()
        full = f"{inst}.{pname}"
        value: Value
        try:
            if text.strip().lower() in _BOOLS and "allowed" not in entry:
                value = _BOOLS[text.strip().lower()]
            else:
                number = parse_setpoint(text, unit)
                check_limits(full, number, entry.get("allowed"), unit)
                value = number
        except EntryError as exc:
            self._say(str(exc), "MAJOR")
            return
        self.sent.append((inst, pname, value))
        self._say(f"sending {full} = {format_value(value, unit)} …", "")
        self.ctx.bus.request(
            inst,
            "set",
            {"name": pname, "value": value},
            lambda reply: self._on_set(inst, pname, value, unit, reply),
        )

    def _on_set(self, inst: str, pname: str, value: Value, unit: str, reply: Reply) -> None:
        full = f"{inst}.{pname}"
        if not reply.ok:
            self._say(f"{full}: refused by the bus — {describe_reply(reply)}", "MAJOR")
            return
        result = reply.value if isinstance(reply.value, dict) else {}
        now = result.get("value")
        self._say(f"{full} set; the instrument reads {format_value(now, unit)}", "OK")
        if isinstance(value, float) and not (
            isinstance(now, int | float)
            and math.isclose(float(now), value, rel_tol=1e-6, abs_tol=1e-9)
        ):
            self.ramps[full] = Ramp(value, time.monotonic())
        item = self._item(inst, pname)
        item.setText(COL_SET, format_value(value, unit))

    def _say(self, text: str, severity: str) -> None:
        self.message.setText(text)
        colour = severity_colour(severity) if severity else DIM_TEXT
        self.message.setStyleSheet(f"QLabel {{ color: {colour}; font-weight: bold; }}")


def _plain(value: Any) -> str:
    """The value in the parameter's own unit (the unit has its own column)."""
    if isinstance(value, float):
        return f"{value:.10g}"
    return format_value(value)
