"""The store on a manual clock: rows, tiers, gaps, restarts, retention, history resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from ionpilot.bus.codec import BusError, Event, Heartbeat, Telemetry
from ionpilot.core.clock import ManualClock
from ionpilot.recorder.query import History
from ionpilot.recorder.settings import RecorderSettings
from ionpilot.recorder.store import MINUTE_NS, NS, Store

T0 = 1_700_000_040 * NS  # a whole minute


def reading(topic: str, seq: int, t_ns: int, value: object, unit: str = "Hz") -> Telemetry:
    return Telemetry(seq, t_ns, "daemon", value, unit, "OK", topic)


def feed(store: Store, clock: ManualClock, topic: str, seconds: int, start_seq: int = 1) -> None:
    """One reading a second for `seconds`, clock following, committed every 10 s."""
    for k in range(seconds):
        store.add(reading(topic, start_seq + k, clock.wall_ns(), 100.0 + k % 10))
        clock.advance(1.0)
        if k % 10 == 9:
            store.commit()
    store.commit()


def test_every_message_is_one_row_and_duplicates_are_ignored(tmp_path: Path) -> None:
    clock = ManualClock(wall_start_ns=T0)
    store = Store(tmp_path / "r.sqlite", clock=clock)
    store.add(reading("servo.clock.output_frequency", 1, T0, 6.9e14))
    store.add(Heartbeat(1, T0, "daemon", 1.0, "OK", "hb.daemon"))
    store.add(Event(1, T0, "daemon", "lock_state", "acquiring -> locked", "OK", {}, "evt.daemon.x"))
    record = {"error_hz": 0.5, "correction_hz": -0.25, "n_probes": 10, "state": "locked"}
    assert store.add(reading("servo.clock.update", 1, T0, record, "")) == 4  # doc + 3 numbers
    assert store.add(reading("servo.clock.output_frequency", 1, T0, 6.9e14)) == 0
    store.commit()
    assert store.duplicates == 1
    (rows,) = store.db.execute("SELECT count(*) FROM raw").fetchone()
    assert rows == 7
    history = History(tmp_path / "r.sqlite", clock=clock)
    clock.advance(1.0)
    got = history.history("servo.clock.update.error_hz", T0 - NS)
    assert got["value"] == [0.5] and got["unit"] == "Hz"
    with pytest.raises(BusError, match=r"nothing recorded as 'servo\.clock\.nothing'"):
        history.history("servo.clock.nothing", T0 - NS)
    store.close()


def test_a_jump_in_sequence_numbers_is_a_gap_of_exactly_the_missing_ones(tmp_path: Path) -> None:
    clock = ManualClock(wall_start_ns=T0)
    store = Store(tmp_path / "r.sqlite", clock=clock)
    for seq in (1, 2, 3, 7, 8):
        store.add(reading("tlm.x.f", seq, T0 + seq * NS, 1.0))
    store.add(reading("tlm.x.f", 1, T0 + 20 * NS, 1.0))  # the publisher restarted
    store.commit()
    gaps = store.db.execute(
        "SELECT topic, first_seq, last_seq, start_ns, end_ns, reason FROM gaps"
    ).fetchall()
    assert gaps == [("tlm.x.f", 4, 6, T0 + 3 * NS, T0 + 7 * NS, "lost")]
    assert store.missed == 3 and store.restarts == 1
    store.close()


def test_after_a_restart_the_absence_is_a_gap_and_nothing_is_doubled(tmp_path: Path) -> None:
    clock = ManualClock(wall_start_ns=T0)
    path = tmp_path / "r.sqlite"
    store = Store(path, clock=clock)
    for seq in range(1, 11):
        store.add(reading("tlm.x.f", seq, clock.wall_ns(), float(seq)))
        clock.advance(1.0)
    store.commit()
    store.db.close()  # killed: no goodbye
    down_from = clock.wall_ns() - NS  # the last commit's time
    clock.advance(30.0)
    again = Store(path, clock=clock)
    # the bus still had 9 and 10 queued for a new subscriber? never twice; 11-40 were missed
    again.add(reading("tlm.x.f", 10, T0 + 9 * NS, 10.0))
    again.add(reading("tlm.x.f", 41, clock.wall_ns(), 41.0))
    again.commit()
    rows = again.db.execute("SELECT seq FROM raw ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [*range(1, 11), 41]
    gaps = again.db.execute(
        "SELECT topic, first_seq, last_seq, start_ns, end_ns, reason FROM gaps ORDER BY id"
    ).fetchall()
    assert gaps[0] == (None, None, None, down_from + NS, clock.wall_ns(), "recorder_down")
    assert gaps[1] == ("tlm.x.f", 11, 40, T0 + 9 * NS, clock.wall_ns(), "recorder_down")
    again.close()


def test_tiers_roll_up_and_history_picks_the_resolution(tmp_path: Path) -> None:
    clock = ManualClock(wall_start_ns=T0)
    settings = RecorderSettings(max_points=1000)
    store = Store(tmp_path / "r.sqlite", settings, clock)
    store.add(reading("servo.clock.state", 1, T0, "locked", ""))
    feed(store, clock, "servo.clock.output_frequency", 3 * 3600)
    store.rollup()
    history = History(tmp_path / "r.sqlite", settings, clock)
    rolled = store.rolled_until("agg_1min")
    assert rolled is not None and clock.wall_ns() - rolled <= 4 * MINUTE_NS
    one = history.history("servo.clock.output_frequency", T0, T0 + 600 * NS)
    assert one["tier"] == "raw" and len(one["t_ns"]) == 600
    assert set(one["lock_state"]) == {"locked"} and one["unit"] == "Hz"
    day = history.history("servo.clock.output_frequency", T0, clock.wall_ns())
    assert day["tier"] == "agg_1min" and day["every_s"] == 60.0
    assert len(day["t_ns"]) == 180  # the last minutes from raw, the rest from the tier
    assert all(c == 60 for c in day["count"])
    assert day["value"][0] == pytest.approx(104.5)
    assert (day["min"][0], day["max"][0]) == (100.0, 109.0)
    hourly = history.history("servo.clock.output_frequency", T0, clock.wall_ns(), every_s=3600)
    assert hourly["tier"] == "agg_1h" and sum(hourly["count"]) == 3 * 3600
    page = history.history("servo.clock.output_frequency", T0, clock.wall_ns(), raw=True)
    assert len(page["t_ns"]) == 1000 and page["next_ns"] == page["t_ns"][-1] + 1
    store.close()


def test_retention_keeps_each_tier_its_time(tmp_path: Path) -> None:
    clock = ManualClock(wall_start_ns=T0)
    settings = RecorderSettings(raw_retention=600, minute_retention=1800, hour_retention=7200)
    store = Store(tmp_path / "r.sqlite", settings, clock)
    feed(store, clock, "tlm.x.f", 3600)
    store.rollup()
    store.enforce_retention()
    oldest_raw = store.db.execute("SELECT min(t_ns) FROM raw").fetchone()[0]
    oldest_minute = store.db.execute("SELECT min(t_ns) FROM agg_1min").fetchone()[0]
    assert oldest_raw >= clock.wall_ns() - 600 * NS
    assert oldest_minute >= clock.wall_ns() - 1800 * NS - MINUTE_NS
    history = History(tmp_path / "r.sqlite", settings, clock)
    with pytest.raises(BusError, match="raw samples are kept"):
        history.history("tlm.x.f", T0, every_s=1.0)
    store.close()
