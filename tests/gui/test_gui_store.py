"""The console's store: ring buffers, latest values, record fields, text-state history."""

from __future__ import annotations

import numpy as np

from ionpilot.bus.codec import Event, Heartbeat, Telemetry
from ionpilot.gui.instruments import EntryError, check_limits, parse_setpoint
from ionpilot.gui.store import LabStore, RingBuffer, series_unit


def test_ring_buffer_keeps_the_newest_samples_contiguous() -> None:
    ring = RingBuffer(4)
    for i in range(10):
        ring.append(float(i), float(i * 10))
    t, y = ring.view()
    assert list(t) == [6.0, 7.0, 8.0, 9.0]
    assert list(y) == [60.0, 70.0, 80.0, 90.0]
    assert ring.last() == (9.0, 90.0)
    assert ring.count == 10 and len(ring) == 4


def test_store_records_numbers_records_text_events_and_beats() -> None:
    now = [100.0]
    store = LabStore(history_points=16, clock=lambda: now[0])
    store.ingest(Telemetry(1, 1_000_000_000, "drivers", 2.5, "dBm", "OK", "tlm.rf_drive.power"))
    store.ingest(Telemetry(1, 2_000_000_000, "daemon", "locked", "", "OK", "servo.clock.state"))
    store.ingest(
        Telemetry(
            1,
            3_000_000_000,
            "daemon",
            {"error_hz": 0.5, "n_probes": 10},
            "",
            "OK",
            "servo.clock.update",
        )
    )
    store.ingest(Heartbeat(1, 0, "drivers", 1.0, "OK", "hb.drivers"))
    store.ingest(
        Event(1, 0, "daemon", "ion_loss", "no fluorescence", "MAJOR", {}, "evt.daemon.ion_loss")
    )
    assert store.value("tlm.rf_drive.power") == 2.5
    assert store.history["tlm.rf_drive.power"].last() == (1.0, 2.5)
    assert store.history["servo.clock.update:error_hz"].last() == (3.0, 0.5)
    assert series_unit(store, "servo.clock.update:error_hz") == "Hz"
    assert series_unit(store, "tlm.rf_drive.power") == "dBm"
    assert list(store.changes["servo.clock.state"]) == [(2.0, "locked")]
    assert store.beats["drivers"].count == 1
    assert store.events[-1].kind == "ion_loss" and store.events_seen == 1
    now[0] = 102.0
    assert store.age("tlm.rf_drive.power") == 2.0
    assert store.fraction_in("servo.clock.state", "locked", 4.0) == 1.0
    assert np.isinf(store.beat_age("daemon"))


def test_setpoints_parse_units_and_respect_limits() -> None:
    assert parse_setpoint("2.5", "dBm") == 2.5
    assert parse_setpoint("25 MHz", "Hz") == 25e6
    assert parse_setpoint("150 mA", "A") == 0.15
    for bad in ("loud", "3 V"):
        try:
            parse_setpoint(bad, "dBm")
        except EntryError:
            pass
        else:
            raise AssertionError(bad)
    check_limits("rf_drive.power", 10.0, [-30.0, 10.0], "dBm")
    try:
        check_limits("rf_drive.power", 15.0, [-30.0, 10.0], "dBm")
    except EntryError as exc:
        assert "outside the allowed range" in str(exc) and "nothing was sent" in str(exc)
    else:
        raise AssertionError("15 dBm passed a 10 dBm limit")
