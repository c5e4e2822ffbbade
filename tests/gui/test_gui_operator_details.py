"""Console details an operator trips over: the audit trail of what happened before the console
listened, unpolled parameters read once (not "—"/"never"), NaN never shown as OK, job times in
local time with their priority, ADEV axes whose labels do not overlap."""

from __future__ import annotations

import math
import time
from typing import Any

from audit_entries import AUDIT_ENTRIES  # type: ignore[import-not-found]

from ionpilot.gui.health import audit_event
from ionpilot.gui.store import EventRecord, LabStore


def test_audit_history_reaches_the_log_through_the_bus(
    qtbot: Any, live: Any, console_factory: Any
) -> None:
    console = console_factory(live.bus, live.directory)
    qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=10_000)
    panel = console.window.show_panel("health")
    qtbot.waitUntil(lambda: panel.model.rowCount() >= 2, timeout=10_000)
    messages = [row.message for row in panel.model.rows]
    assert "ion_loss: recovered in 52.5 s" in messages
    assert panel.log_count.text().endswith(f"of {panel.model.rowCount()} events")
    assert "2 entries from the daemon" in panel.audit_label.text()
    panel.load_audit()  # on request again: nothing doubled
    qtbot.waitUntil(lambda: "0 not seen live" in panel.audit_label.text(), timeout=10_000)
    assert panel.model.rowCount() == len(panel.model.rows) >= 2


def test_unpolled_parameters_are_read_once_when_the_panel_opens(
    qtbot: Any, live: Any, console_factory: Any
) -> None:
    console = console_factory(live.bus, live.directory)
    qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=10_000)
    panel = console.window.show_panel("instruments")
    qtbot.waitUntil(lambda: "oven" in panel.described, timeout=10_000)
    unpolled = panel.unpolled("oven")
    assert unpolled, panel.described["oven"]
    keys = {f"oven.{p}" for p in unpolled}
    qtbot.waitUntil(lambda: keys <= set(panel.read_once), timeout=10_000)
    panel.refresh()
    item = panel._item("oven", unpolled[0])
    assert item.text(1) not in ("", "—") and item.text(3) != "never"
    assert item.text(5) == "read once"
    asked_before = dict(panel.read_once)
    assert panel.read_unpolled() > 0  # on request (F6) again
    qtbot.waitUntil(
        lambda: all(panel.read_once[k][1] > asked_before[k][1] for k in keys), timeout=10_000
    )


def test_nan_is_invalid_not_ok(qtbot: Any, live: Any, console_factory: Any) -> None:
    console = console_factory(live.bus, live.directory)
    qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=10_000)
    panel = console.window.show_panel("instruments")
    live.publisher.publish("tlm.trap.micromotion_index", math.nan, "1")
    qtbot.waitUntil(lambda: "tlm.trap.micromotion_index" in console.store.latest, timeout=5000)
    panel.refresh()
    item = panel._item("trap", "micromotion_index")
    assert item.text(1) == "nan" and item.text(5) == "INVALID"


def test_audit_entries_become_log_events_once() -> None:
    records = [r for e in AUDIT_ENTRIES if (r := audit_event(dict(e)))]
    assert [r.kind for r in records] == ["recovery_trip", "recovery_resume"]
    assert records[0].message == "ion_loss: servo.ion.fluorescence MAJOR (below LOLO 3000)"
    assert records[0].severity == "MINOR" and records[0].topic == "evt.daemon.recovery_trip"
    assert audit_event({"kind": "x"}) is None
    assert audit_event({**AUDIT_ENTRIES[0], "severity": "ALERT"}).severity == "MAJOR"  # type: ignore[union-attr]
    store = LabStore(max_events=3)
    live_copy = EventRecord(
        records[1].t_ns + 1_000_000, "daemon", records[1].kind, records[1].message, "OK", ""
    )
    store.events.append(live_copy)  # the resume was also received live
    assert store.backfill_events(records) == 1  # only the trip is new
    assert [e.kind for e in store.events] == ["recovery_trip", "recovery_resume"]
    assert store.backfill_events(records) == 0


def test_job_times_are_local_and_adev_labels_do_not_crowd() -> None:
    import pyqtgraph as pg

    from ionpilot.gui.app import ensure_app
    from ionpilot.gui.clock import DecadeAxis
    from ionpilot.gui.sequencer_panel import QUEUE_COLUMNS, local_time

    assert "Priority" in QUEUE_COLUMNS and not any("Unix" in c for c in QUEUE_COLUMNS)
    now = time.time()
    assert local_time(now) == time.strftime("%H:%M:%S", time.localtime(now))
    assert local_time(86_400.0 * 365).startswith("1971-")
    assert local_time(None) == "—" and local_time(True) == "—"
    ensure_app()
    axis = DecadeAxis("left")
    axis.setLogMode(True)
    axis.setRange(-18.0, -14.0)  # four decades: decades only
    values = [math.log10(m) + e for e in (-17, -16) for m in range(1, 10)]
    labels = axis.tickStrings(values, 1.0, 1.0)
    assert [s for s in labels if s] == ["1e-17", "1e-16"]
    axis.setRange(math.log10(0.3), math.log10(3.0))  # under a decade: 1, 2, 5
    values = [math.log10(v) for v in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 3)]
    assert [s for s in axis.tickStrings(values, 1.0, 1.0) if s] == ["0.5", "1", "2"]
    assert isinstance(axis, pg.AxisItem)


def test_a_signal_not_measured_yet_is_not_counted_ok(
    qtbot: Any, live: Any, console_factory: Any
) -> None:
    console = console_factory(live.bus, live.directory)
    qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=10_000)
    overview = console.window.show_panel("overview")
    pub = live.publisher
    for topic, value in (("servo.trap.micromotion", math.nan), ("servo.ion.fluorescence", 4e4)):
        pub.publish(f"health.{topic}", {"severity": "OK", "reason": "", "value": value})
    pub.publish("health.aggregate", {"severity": "OK", "latched": "OK", "unacknowledged": ""})
    qtbot.waitUntil(lambda: "health.aggregate" in console.store.latest, timeout=5000)
    qtbot.waitUntil(
        lambda: "not measured yet: servo.trap.micromotion" in overview.health.detail.text(),
        timeout=5000,
    )


def test_a_busy_console_thread_does_not_cry_bus_disconnected(
    qtbot: Any, live: Any, console_factory: Any
) -> None:
    """Messages waiting in the socket while the GUI thread was busy are read before the bus
    is judged silent (the screenshot said "BUS DISCONNECTED" while the hub was fine)."""
    import zmq

    console = console_factory(live.bus, live.directory)
    qtbot.waitUntil(lambda: console.bus.state == "connected", timeout=10_000)
    connection = console.bus
    live.publisher.publish("tlm.rf_drive.note", 1.0)
    assert connection._subscriber.socket.poll(5000, zmq.POLLIN)  # waiting, not yet read
    console.store.last_message = time.monotonic() - 10.0  # as after a 10 s repaint
    connection._check()
    assert connection.state == "connected"
    assert console.store.silence() < 1.0
