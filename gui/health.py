"""Health and events: the alarm table (worst first) with acknowledge, and the searchable log.

Alarms come from two streams: `health.<signal>` readings whose severity is not OK (they clear
when the signal does; a cleared alarm the monitor latched stays, dimmed, until acknowledged), and
events of severity MINOR or worse (one row per source and kind, state `event`, kept until
acknowledged). An active alarm's severity is a filled pill; a cleared one keeps its severity's
colour without the fill. An acknowledgement is a bus command (`call` name=acknowledge on the
health monitor's process, `signals` = the alarm's name); the monitor records who sent it, the
console shows its reply. The
log below holds every event the console received, searchable and filterable; the audit of
automatic actions (recovery steps, playbooks) is one tick away. What happened before the console
listened comes from the daemon's audit log, asked over the bus (`get name=audit`) when the panel
first opens and on request, never by opening its database.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QSettings, QSortFilterProxyModel, Qt
from PyQt6.QtGui import QBrush, QColor
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ionpilot.bus.codec import STATUSES, Reply
from ionpilot.gui.connection import describe_reply
from ionpilot.gui.context import Context
from ionpilot.gui.overview import health_severity
from ionpilot.gui.store import EventRecord, severity_rank
from ionpilot.gui.style import (
    DIM_TEXT,
    TEXT,
    format_value,
    section_title,
    severity_colour,
    text_on,
)

AUDIT_ENTRIES = 500  # audit entries asked of the daemon (its reply limit)
AUDIT_WORDS = ("audit", "recover", "playbook", "action", "step", "escalat", "restart", "ack")
ALARM_COLUMNS = ("Severity", "Alarm", "Detail", "First", "Last", "Count", "State", "Acknowledged")
LOG_COLUMNS = ("Time", "Severity", "Source", "Kind", "Message")


@dataclass
class Alarm:
    """One row of the alarm table."""

    key: str  # health signal name, or "<src>.<kind>" for an event
    severity: str
    detail: str
    first: float
    last: float
    count: int = 1
    active: bool = True
    from_health: bool = False
    acked: str = ""


def alarm_state(alarm: Alarm) -> str:
    """`active` / `cleared` for a signal's alarm; an event happened once: `event`."""
    if not alarm.from_health:
        return "event"
    return "active" if alarm.active else "cleared"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def audit_event(entry: dict[str, Any]) -> EventRecord | None:
    """One entry of the daemon's audit log as the event it was published as live
    (`evt.daemon.recovery_<kind>`, "action: reason"); None for a malformed entry."""
    try:
        wall_ns, kind = int(entry["wall_ns"]), str(entry["kind"])
        message = f"{entry['action']}: {entry['reason']}"
    except (KeyError, TypeError, ValueError):
        return None
    severity = str(entry.get("severity", "OK"))
    severity = "MAJOR" if severity == "ALERT" else severity
    if severity not in STATUSES:
        severity = "OK"
    return EventRecord(
        wall_ns,
        "daemon",
        f"recovery_{kind}",
        message,
        severity,
        f"evt.daemon.recovery_{kind}",
        {"source": str(entry.get("source", "")), "from": "audit log"},
    )


def is_audit(event: EventRecord) -> bool:
    text = f"{event.topic} {event.kind}".lower()
    return any(word in text for word in AUDIT_WORDS)


class EventLogModel(QAbstractTableModel):
    """The store's event deque as a table, newest first."""

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.ctx = ctx
        self.rows: list[EventRecord] = []
        self._seen = -1

    def sync(self) -> None:
        store = self.ctx.store
        version = store.events_seen + store.events_backfilled
        if version == self._seen:
            return
        self._seen = version
        self.beginResetModel()
        self.rows = list(reversed(self.ctx.store.events))
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | None = None) -> int:  # noqa: N802
        return len(self.rows)

    def columnCount(self, parent: QModelIndex | None = None) -> int:  # noqa: N802
        return len(LOG_COLUMNS)

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return LOG_COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        event = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                t = event.t_ns * 1e-9
                return (
                    time.strftime("%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"
                )
            data_text = f"  {format_value(event.data)}" if event.data else ""
            return (None, event.severity, event.src, event.kind, event.message + data_text)[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return QBrush(QColor(severity_colour(event.severity)))
        if role == Qt.ItemDataRole.UserRole:
            return event
        return None


class EventFilter(QSortFilterProxyModel):
    """Text search over every column, a minimum severity, and "automatic actions only"."""

    def __init__(self) -> None:
        super().__init__()
        self.pattern: re.Pattern[str] | None = None
        self.min_rank = 0
        self.audit_only = False

    def set_text(self, text: str) -> None:
        self.pattern = re.compile(re.escape(text.strip()), re.IGNORECASE) if text.strip() else None
        self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:  # noqa: N802
        model = self.sourceModel()
        assert isinstance(model, EventLogModel)
        event = model.rows[row]
        if severity_rank(event.severity) < self.min_rank:
            return False
        if self.audit_only and not is_audit(event):
            return False
        if self.pattern is None:
            return True
        haystack = f"{event.src} {event.kind} {event.message} {event.topic} {event.data}"
        return self.pattern.search(haystack) is not None


class HealthPanel(QWidget):
    """Alarms on top, the event and audit log below."""

    name = "health"
    title = "Health && events"

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.alarms: dict[str, Alarm] = {}
        self._events_seen = 0
        self.acks_sent: list[str] = []

        # alarms -------------------------------------------------------------------------
        self.min_severity = QComboBox()
        self.min_severity.addItems(["MINOR and worse", "MAJOR and worse", "INVALID only"])
        self.min_severity.currentIndexChanged.connect(self.refresh)
        self.show_cleared = QCheckBox("show cleared")
        self.show_cleared.setChecked(True)
        self.show_cleared.toggled.connect(self.refresh)
        self.ack_button = QPushButton("Acknowledge all (Ctrl+K)")
        self.ack_button.setToolTip("the selected alarms, or with none selected all shown")
        self.ack_button.clicked.connect(self.acknowledge_selected)
        self.ack_label = QLabel("")
        self.ack_label.setWordWrap(True)
        self.ack_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        alarm_bar = QHBoxLayout()
        alarm_bar.addWidget(section_title("ALARMS"))
        alarm_bar.addWidget(self.min_severity)
        alarm_bar.addWidget(self.show_cleared)
        alarm_bar.addStretch(1)
        alarm_bar.addWidget(self.ack_button)
        self.safe_button = QPushButton("Leave safe state…")
        self.safe_button.setToolTip("After an escalation: the operator has checked the trap")
        self.safe_button.clicked.connect(self.leave_safe_state)
        alarm_bar.addWidget(self.safe_button)
        self.table = QTableWidget(0, len(ALARM_COLUMNS))
        self.table.setHorizontalHeaderLabels(ALARM_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        self.table.itemSelectionChanged.connect(self._ack_label)
        header = self.table.horizontalHeader()
        assert header is not None
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.empty_label = QLabel("No alarms.")
        self.empty_label.setStyleSheet(
            f"color: {severity_colour('OK')}; font-size: 14pt; font-weight: bold;"
        )
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(alarm_bar)
        top_layout.addWidget(self.empty_label)
        top_layout.addWidget(self.table, 1)
        top_layout.addWidget(self.ack_label)

        # log ----------------------------------------------------------------------------
        self.model = EventLogModel(ctx)
        self.proxy = EventFilter()
        self.proxy.setSourceModel(self.model)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search events and audit log (Ctrl+F)")
        self.search.textChanged.connect(self.proxy.set_text)
        self.log_severity = QComboBox()
        self.log_severity.addItems(["all severities", *[f"{s} and worse" for s in STATUSES[1:]]])
        self.log_severity.currentIndexChanged.connect(self._on_log_severity)
        self.audit_only = QCheckBox("automatic actions only (audit)")
        self.audit_only.toggled.connect(self._on_audit_only)
        self.log_count = QLabel("")
        self.log_count.setStyleSheet(f"color: {DIM_TEXT};")
        self.audit_button = QPushButton("Load audit history")
        self.audit_button.setToolTip(
            "ask the daemon for its audit log: what it did before this console was listening"
        )
        self.audit_button.clicked.connect(self.load_audit)
        self.audit_label = QLabel("")
        self.audit_label.setStyleSheet(f"color: {DIM_TEXT};")
        self._audit_asked = False
        log_bar = QHBoxLayout()
        log_bar.addWidget(section_title("EVENTS & AUDIT LOG"))
        log_bar.addWidget(self.search, 1)
        log_bar.addWidget(self.log_severity)
        log_bar.addWidget(self.audit_only)
        log_bar.addWidget(self.log_count)
        log_bar.addWidget(self.audit_button)
        self.log = QTableView()
        self.log.setModel(self.proxy)
        self.log.setAlternatingRowColors(True)
        self.log.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.log.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        self.log.setWordWrap(False)
        log_header = self.log.horizontalHeader()
        assert log_header is not None
        for col in range(4):
            log_header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        log_header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addLayout(log_bar)
        bottom_layout.addWidget(self.audit_label)
        bottom_layout.addWidget(self.log, 1)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(bottom)
        self.splitter.setSizes([380, 520])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.splitter)

    # ------------------------------------------------------------------------ audit log

    def showEvent(self, event: Any) -> None:  # noqa: N802
        """The first time the panel is shown, fetch what happened before the console listened."""
        super().showEvent(event)
        if not self._audit_asked:
            self.load_audit()

    def load_audit(self) -> None:
        """Ask the daemon for its newest audit entries (a bus `get`, observer role suffices)."""
        self._audit_asked = True
        self.audit_label.setText("asking the daemon for its audit log …")
        self.ctx.bus.request(
            self.ctx.settings.ack_target,
            "get",
            {"name": "audit", "limit": AUDIT_ENTRIES},
            self._on_audit,
        )

    def _on_audit(self, reply: Reply) -> None:
        if not reply.ok or not isinstance(reply.value, list):
            why = describe_reply(reply) if not reply.ok else "not a list of entries"
            self.audit_label.setText(f"audit log not loaded: {why}")
            self._audit_asked = False  # asked again the next time the panel opens
            self.audit_label.setStyleSheet(f"color: {severity_colour('MINOR')};")
            return
        records = [r for e in reply.value if isinstance(e, dict) and (r := audit_event(e))]
        added = self.ctx.store.backfill_events(records)
        self.audit_label.setText(
            f"audit log: {len(records)} entries from the daemon at {_clock(time.time())}, "
            f"{added} not seen live"
        )
        self.audit_label.setStyleSheet(f"color: {DIM_TEXT};")
        self.refresh()

    # ---------------------------------------------------------------------------- intake

    def ingest(self) -> None:
        """Fold new health readings and events into the alarm rows (cheap; runs every tick)."""
        store = self.ctx.store
        for topic in store.topics("health."):
            if topic == "health.aggregate":
                continue
            latest = store.latest[topic]
            sev = health_severity(latest.value, latest.status)
            key = topic.removeprefix("health.")
            alarm = self.alarms.get(key)
            value = latest.value
            detail = format_value(value)
            latched, acked_by = "OK", ""
            if isinstance(value, dict):
                unit = str(value.get("unit", "") or "")  # "" from monitors that send none
                shown = format_value(value.get("value"), unit)
                detail = f"{value.get('reason', '')}  (value {shown})"
                latched = str(value.get("latched", "OK"))
                acked_by = str(value.get("acknowledged_by", "") or "")
            t = latest.t_ns * 1e-9
            if alarm is not None and acked_by:
                alarm.acked = acked_by
            if sev == "OK" and latched not in ("OK", "") and not acked_by:
                sev_shown = latched  # cleared, but latched until acknowledged
                if alarm is None:  # it cleared before this console started
                    note = f"{latched} earlier, latched until acknowledged; now: {detail}"
                    self.alarms[key] = Alarm(key, sev_shown, note, t, t, 1, False, True)
                elif alarm.active:
                    alarm.active = False
                    alarm.detail = (
                        f"cleared at {_clock(t)}, latched until acknowledged (was: {alarm.detail})"
                    )
                continue
            if sev != "OK":
                if alarm is None or not alarm.active:
                    count = alarm.count + 1 if alarm is not None else 1
                    self.alarms[key] = Alarm(key, sev, detail, t, t, count, True, True)
                else:
                    alarm.severity = sev
                    alarm.detail = detail
                    alarm.last = t
            elif alarm is not None and alarm.active and alarm.from_health:
                alarm.active = False
                alarm.detail = f"cleared at {_clock(t)} (was: {alarm.detail})"
                alarm.last = t
        new = store.events_seen - self._events_seen
        self._events_seen = store.events_seen
        if new > 0:
            for event in list(store.events)[-min(new, len(store.events)) :]:
                if severity_rank(event.severity) < 1:
                    continue
                key = f"{event.src}.{event.kind}"
                t = event.t_ns * 1e-9
                alarm = self.alarms.get(key)
                if alarm is None or alarm.acked:
                    self.alarms[key] = Alarm(key, event.severity, event.message, t, t)
                else:
                    alarm.count += 1
                    alarm.last = t
                    alarm.detail = event.message
                    alarm.active = True
                    if severity_rank(event.severity) > severity_rank(alarm.severity):
                        alarm.severity = event.severity

    # --------------------------------------------------------------------------- refresh

    def refresh(self) -> None:
        self.ingest()
        min_rank = self.min_severity.currentIndex() + 1
        rows = [
            a
            for a in self.alarms.values()
            if severity_rank(a.severity) >= min_rank
            and (a.active or self.show_cleared.isChecked())
            and not (a.acked and not a.active)
        ]
        # signals in alarm now first, then what happened (cleared alarms, events), worst first
        rows.sort(
            key=lambda a: (not (a.active and a.from_health), -severity_rank(a.severity), -a.last)
        )
        selected = set(self.selected_keys())
        self.table.setRowCount(len(rows))
        for r, alarm in enumerate(rows):
            values = (
                alarm.severity,
                alarm.key,
                alarm.detail,
                _clock(alarm.first),
                _clock(alarm.last),
                str(alarm.count),
                alarm_state(alarm),
                alarm.acked,
            )
            # now (bright, filled) or history (dim): a cleared alarm, an acknowledged event
            current = alarm.active and not (alarm.acked and not alarm.from_health)
            text_colour = QBrush(QColor(TEXT if current else DIM_TEXT))
            for c, text in enumerate(values):
                item = self.table.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(r, c, item)
                item.setText(text)
                item.setForeground(text_colour)
                if c == 1:
                    item.setData(Qt.ItemDataRole.UserRole, alarm.key)
                if c == 2:
                    item.setToolTip(text)  # the column may elide a long message
            sev_item = self.table.item(r, 0)
            assert sev_item is not None
            colour = severity_colour(alarm.severity)
            if current:  # a filled pill
                sev_item.setBackground(QBrush(QColor(colour)))
                sev_item.setForeground(QBrush(QColor(text_on(colour))))
            else:  # history: the severity it had, in its colour, no fill
                sev_item.setData(Qt.ItemDataRole.BackgroundRole, None)
                sev_item.setForeground(QBrush(QColor(colour)))
            if alarm.key in selected:
                self.table.selectRow(r)
        self.empty_label.setVisible(not rows)
        self.model.sync()
        self.log_count.setText(f"{self.proxy.rowCount()} of {self.model.rowCount()} events")

    def visible_alarms(self) -> list[str]:
        keys = []
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 1)
            if item is not None:
                keys.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return keys

    def selected_keys(self) -> list[str]:
        model = self.table.selectionModel()
        if model is None:
            return []
        keys = []
        for index in model.selectedRows(1):
            item = self.table.item(index.row(), 1)
            if item is not None:
                keys.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return keys

    # ----------------------------------------------------------------------- acknowledge

    def _ack_label(self) -> None:
        which = "selected" if self.selected_keys() else "all"
        self.ack_button.setText(f"Acknowledge {which} (Ctrl+K)")

    def acknowledge_selected(self) -> None:
        """The selected rows; with none selected, every row not yet acknowledged."""
        keys = self.selected_keys() or [
            key for key in self.visible_alarms() if not self.alarms[key].acked
        ]
        if not keys:
            self.ack_label.setText("nothing to acknowledge")
            return
        for key in keys:
            self.acknowledge(key)

    def acknowledge(self, key: str) -> None:
        """Send the acknowledgement; mark the alarm when the daemon accepts, show a refusal as is
        (the daemon records who sent it from the request's client name)."""
        target = self.ctx.settings.ack_target
        self.acks_sent.append(key)
        self.ack_label.setText(f"acknowledging {key} …")
        args = {"name": "acknowledge", "signals": [key]}
        self.ctx.bus.request(target, "call", args, lambda reply: self._on_ack(key, reply))

    def leave_safe_state(self) -> None:
        self.ack_label.setText("asking the daemon to leave the safe state …")
        self.ctx.bus.request(
            self.ctx.settings.ack_target,
            "call",
            {"name": "leave_safe_state"},
            lambda reply: self._on_ack("safe state", reply),
        )

    def _on_ack(self, key: str, reply: Reply) -> None:
        alarm = self.alarms.get(key)
        if reply.ok:
            if alarm is not None:
                alarm.acked = f"{self.ctx.settings.operator} {_clock(time.time())}"
            self.ack_label.setText(f"{key} acknowledged: {format_value(reply.value)}")
            self.ack_label.setStyleSheet(f"color: {severity_colour('OK')};")
        else:
            self.ack_label.setText(f"{key}: acknowledgement refused — {describe_reply(reply)}")
            self.ack_label.setStyleSheet(f"color: {severity_colour('MAJOR')};")
        self.refresh()

    # ---------------------------------------------------------------------------- filters

    def _on_log_severity(self, index: int) -> None:
        self.proxy.min_rank = index
        self.proxy.invalidateFilter()

    def _on_audit_only(self, on: bool) -> None:
        self.proxy.audit_only = on
        self.proxy.invalidateFilter()

    def save_state(self, settings: QSettings) -> None:
        settings.setValue("health/splitter", self.splitter.saveState())
        settings.setValue("health/audit_only", self.audit_only.isChecked())

    def restore_state(self, settings: QSettings) -> None:
        state = settings.value("health/splitter")
        if state is not None:
            self.splitter.restoreState(state)
        self.audit_only.setChecked(settings.value("health/audit_only", False, type=bool))
