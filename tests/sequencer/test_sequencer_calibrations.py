"""The calibration record: checked on the way in, durable, stale after its validity."""

from __future__ import annotations

from pathlib import Path

import pytest

from ionpilot.sequencer.calibrations import CalibrationError, CalibrationStore


def test_a_recorded_calibration_is_read_back_and_ages(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path, validity_s={"pi_time": 100.0})
    store.record(
        "pi_time", 12.5e-6, 0.2e-6, unit="s", measured_s=1_000.0, source="experiment rabi, run 3"
    )
    again = CalibrationStore(tmp_path, validity_s={"pi_time": 100.0})
    cal = again.get("pi_time")
    assert cal is not None and cal.value == 12.5e-6 and cal.uncertainty == 0.2e-6
    assert again.stale(1_050.0) == []
    assert again.stale(1_101.0) == ["pi_time"]


@pytest.mark.parametrize(
    ("quantity", "value", "unit", "match"),
    [
        ("pi_tme", 1e-5, "s", "unknown calibration quantity"),
        ("pi_time", 12.5, "us", "recorded in 's'"),
        ("pi_time", float("nan"), "s", "must be finite"),
        ("ms_fidelity", 1.02, "", "a fidelity is a fraction in"),
    ],
)
def test_a_bad_calibration_is_refused_and_nothing_is_written(
    tmp_path: Path, quantity: str, value: float, unit: str, match: str
) -> None:
    store = CalibrationStore(tmp_path)
    with pytest.raises(CalibrationError, match=match):
        store.record(quantity, value, 0.1, unit=unit, measured_s=1.0, source="test")
    assert not store.path.exists()
