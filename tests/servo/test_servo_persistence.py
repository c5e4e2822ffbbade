"""Persisted clock-lock state: atomic writes, and refusal of stale or corrupt files."""

import dataclasses
import json

import pytest

from ionpilot.servo.persistence import ClockLockSnapshot, StateRestoreError, StateStore

NOW = 1_700_000_000_000_000_000


BASE = ClockLockSnapshot(
    saved_wall_ns=NOW,
    reference_wall_ns=NOW,
    aom_frequency_hz=200_000_037.25,
    drift_hz_per_s=0.3,
    state="locked",
    interrogation="rabi",
    updates=1200,
)


def snapshot(**changes):
    return dataclasses.replace(BASE, **changes)


def test_round_trip_and_no_temporary_files_left(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(snapshot())
    store.save(snapshot(updates=1201))
    assert store.load(NOW + 5 * 10**9, max_age_s=600).updates == 1201
    assert [p.name for p in store.directory.iterdir()] == ["clock_lock.json"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"version": 99}), "version 99"),
    ],
)
def test_corrupt_files_are_refused_clearly(tmp_path, text, message):
    store = StateStore(tmp_path)
    store.path.write_text(text)
    with pytest.raises(StateRestoreError, match=message):
        store.load(NOW, 600)


def test_bad_fields_are_refused(tmp_path):
    store = StateStore(tmp_path)
    data = json.loads(snapshot().to_json())
    data["aom_frequency_hz"] = "NaN"
    store.path.write_text(json.dumps(data))
    with pytest.raises(StateRestoreError, match="aom_frequency_hz"):
        store.load(NOW, 600)
    del data["aom_frequency_hz"]
    store.path.write_text(json.dumps(data))
    with pytest.raises(StateRestoreError, match="missing field"):
        store.load(NOW, 600)


def test_stale_future_missing_and_unlocked_states_are_refused(tmp_path):
    store = StateStore(tmp_path)
    with pytest.raises(StateRestoreError, match="no saved state"):
        store.load(NOW, 600)
    store.save(snapshot())
    with pytest.raises(StateRestoreError, match="stale"):
        store.load(NOW + 601 * 10**9, 600)
    with pytest.raises(StateRestoreError, match="future"):
        store.load(NOW - 10 * 10**9, 600)
    store.save(snapshot(state="acquiring"))
    with pytest.raises(StateRestoreError, match="not locked"):
        store.load(NOW, 600)
