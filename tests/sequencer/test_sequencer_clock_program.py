"""The daemon's clock interrogation as the sequencer builds it: validated and translated once,
re-tuned per update, refused outside the clock beam's band, with a counting cooling window and
the shot padded to the servo's probe cycle."""

from __future__ import annotations

import pytest

from ionpilot.config import load_config
from ionpilot.sequencer.clock import COOL_WINDOW, clock_device, clock_program
from ionpilot.sequencer.errors import ScheduleError, SequencerError
from ionpilot.sequencer.schedule import Schedule, clock_interrogation, validate_schedule

DEVICE = clock_device(load_config().device, cooling_s=0.002, detection_s=0.001, clock_rabi_hz=25.0)


def test_rabi_program_counts_the_cooling_window_and_fills_the_cycle() -> None:
    program = clock_program(DEVICE, "rabi", 0.08, shot_s=0.1)
    pulses = program.pulses_at(200.001e6)
    channels = [p["channel"] for p in pulses]
    assert channels == ["cool", "repump", "clock", "detect", "cool"]
    assert pulses[0]["window"] == COOL_WINDOW and "window" not in pulses[-1]
    assert pulses[2]["frequency_hz"] == 200.001e6
    assert pulses[2]["amplitude"] == pytest.approx(1 / (2 * 25.0 * 0.08))
    assert program.shot_s == pytest.approx(0.1)
    assert program.pulses[2]["frequency_hz"] == DEVICE.channels["clock_435"].aom_center_frequency


def test_a_frequency_outside_the_band_is_refused_and_nothing_built() -> None:
    program = clock_program(DEVICE, "rabi", 0.08)
    lo, hi = program.band_hz
    with pytest.raises(ScheduleError, match="outside"):
        program.pulses_at(hi + 1.0)
    assert program.pulses_at(lo)[2]["frequency_hz"] == lo


def test_an_unplayable_ramsey_pulse_is_refused_by_validation() -> None:
    with pytest.raises(ScheduleError, match="amplitude 2"):
        clock_program(DEVICE, "ramsey", 0.3, ramsey_pulse_s=0.005)
    ok = clock_program(DEVICE, "ramsey", 0.3, ramsey_pulse_s=0.01)
    assert [p["channel"] for p in ok.pulses].count("clock") == 2


def test_a_cycle_shorter_than_the_pulses_is_refused() -> None:
    with pytest.raises(SequencerError, match="shorter than its pulses"):
        clock_interrogation(DEVICE, "rabi", 0.08, shot_s=0.05)


def test_a_counting_window_belongs_on_the_cooling_channel_only() -> None:
    schedule = clock_interrogation(DEVICE, "rabi", 0.08, cooling_window="cool")
    assert Schedule.loads(schedule.dumps()).events[0].window == "cool"
    data = schedule.to_json()
    data["events"][1]["window"] = "pump"  # the prepare pulse may not count photons
    with pytest.raises(ScheduleError, match="counting window 'pump'"):
        validate_schedule(Schedule.from_json(data), DEVICE)
