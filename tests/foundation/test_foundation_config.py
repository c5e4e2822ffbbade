"""The default lab file is valid, includes merge, and limits/units come out in SI."""

from __future__ import annotations

from pathlib import Path

import pytest

from ionpilot.cli import main
from ionpilot.config import load_config
from ionpilot.core.units import UnitError, parse_quantity

ROOT = Path(__file__).resolve().parents[2]
SIM_LAB = ROOT / "configs" / "sim-lab.yaml"


def test_default_lab_is_valid_and_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(SIM_LAB)]) == 0
    out = capsys.readouterr().out
    assert "lab sim-yb171-e2: OK" in out
    assert "rf_drive" in out and "rs_smb100a" in out
    assert len(out.splitlines()) <= 40  # one screen


def test_limits_are_si_and_narrow_hardware() -> None:
    config = load_config(SIM_LAB)
    rf = config.instruments["rf_drive"]
    assert rf.limit_values()["frequency"] == (20e6, 40e6)
    laser = config.instruments["laser_369"]
    low, high = laser.limit_values()["current"]
    assert low == 0.0
    assert high == pytest.approx(0.150)
    assert config.instruments["wavemeter"].poll["ch1.frequency"] == 2.0


def test_include_merges_machine_override_on_top() -> None:
    config = load_config(ROOT / "tests" / "configs" / "good" / "machine_override.yaml")
    rf = config.instruments["rf_drive"]
    assert rf.limit_values()["power"] == (-30.0, 5.0)  # mappings merge key by key
    assert rf.limit_values()["frequency"] == (20e6, 40e6)  # the rest of the shared file stays
    assert "laser_369" in config.instruments


def test_show_prints_the_resolved_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    override = ROOT / "tests" / "configs" / "good" / "machine_override.yaml"
    assert main(["config", "show", str(override)]) == 0
    out = capsys.readouterr().out
    assert "power:\n        min: -30 dBm\n        max: 5 dBm" in out
    assert "include" not in out.split("\n", 1)[1]


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("25 MHz", "Hz", 25e6),
        ("80 ms", "s", 0.08),
        ("150 mA", "A", 0.15),
        ("4 h", "s", 14400.0),
        ("2.5 V/s", "V/s", 2.5),
        ("-30 dBm", "dBm", -30.0),
        ("10 mV/MHz", "V/Hz", 1e-8),
    ],
)
def test_quantities_parse_to_si(text: str, unit: str, value: float) -> None:
    q = parse_quantity(text, unit)
    assert q.value == pytest.approx(value)
    assert q.unit == unit


@pytest.mark.parametrize("text", ["25 MV", "25", "abc", "3 kdBm", "1/2/3 Hz", "nan Hz"])
def test_bad_quantities_are_refused(text: str) -> None:
    with pytest.raises(UnitError):
        parse_quantity(text, "Hz")
