"""The console's store stays bounded when a script publishes a new topic per shot, per job or
per second for weeks: topics, plotted series and heartbeat sources are capped and counted."""

from __future__ import annotations

from ionpilot.bus.codec import Event, Heartbeat, Telemetry
from ionpilot.gui.store import LabStore


def test_topics_series_and_sources_are_capped() -> None:
    now = [0.0]
    store = LabStore(history_points=8, max_events=10, clock=lambda: now[0], max_topics=50)
    store.max_series = 20
    store.ingest(Telemetry(1, 1, "drivers", 1.0, "V", "OK", "tlm.dc.voltage"))
    for i in range(10_000):  # a runaway script: one new topic, record and source per message
        now[0] += 1.0
        store.ingest(Telemetry(1, i, "script", float(i), "", "OK", f"tlm.script.shot_{i}"))
        store.ingest(Telemetry(1, i, "script", f"s{i}", "", "OK", f"tlm.script.text_{i}"))
        store.ingest(Telemetry(1, i, "script", {"a": 1.0, "b": 2}, "", "OK", f"rec.{i}"))
        store.ingest(Heartbeat(1, i, f"script-{i}", 1.0, "OK", f"hb.script-{i}"))
        store.ingest(Event(1, i, "script", "note", "x", "OK", {}, "evt.script.note"))
    assert len(store.latest) == 50
    assert len(store.history) == 20
    assert len(store.changes) <= 50
    assert len(store.beats) == 50
    assert len(store.events) == 10 and store.events_seen == 10_000
    assert store.refused["topics"] == 3 * 10_000 - 49
    assert store.refused["sources"] == 10_000 - 50
    assert store.messages == 50_001
    # what was there first keeps updating
    store.ingest(Telemetry(2, 2, "drivers", 2.0, "V", "OK", "tlm.dc.voltage"))
    assert store.value("tlm.dc.voltage") == 2.0
    assert store.history["tlm.dc.voltage"].last() == (2e-9, 2.0)


def test_default_caps_hold_a_whole_lab() -> None:
    store = LabStore()
    # the simulated lab publishes well under a hundred numeric series (instruments, servo
    # records, health); the caps leave room for several labs' worth on one console
    assert store.max_series >= 300 and store.max_topics >= 10 * store.max_series // 2
    assert store.max_series * store.history_points * 32 <= 200 * 2**20  # rings: <= 200 MiB
