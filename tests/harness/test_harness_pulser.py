"""The in-process pulse controller remembers the schedules it has parsed: what it plays is what
the controller's own parse gives, a changed field is parsed and checked again, and a bad DDS
frequency on a known schedule is refused as the socket refuses it."""

from __future__ import annotations

from typing import Any

import pytest

from ionpilot.harness.lab import InProcessPulser
from ionpilot.sim.instruments.ionpilot_pulser import Pulser, RequestError
from ionpilot.sim.world import World


def clock_schedule(frequency_hz: float) -> list[dict[str, Any]]:
    return [
        {"t_ns": 0, "duration_ns": 2_000_000, "channel": "cool", "window": "cool"},
        {"t_ns": 2_000_000, "duration_ns": 20_000, "channel": "repump"},
        {
            "t_ns": 2_020_000,
            "duration_ns": 80_000_000,
            "channel": "clock",
            "amplitude": 0.25,
            "phase_rad": 0.0,
            "frequency_hz": frequency_hz,
        },
        {
            "t_ns": 82_020_000,
            "duration_ns": 1_000_000,
            "channel": "detect",
            "window": "detect",
            "per_ion": True,
        },
    ]


def test_a_known_schedule_plays_what_the_parse_gives() -> None:
    world = World()
    remembering, parsing = InProcessPulser(world, "pulser"), Pulser(world, "pulser")
    for frequency in (200e6 + 3.0, 200e6 + 3.0, 200e6 - 3.0, 200_000_001):  # an int too
        schedule = clock_schedule(frequency)
        assert remembering._program(schedule) == parsing._program(schedule)
    assert len(remembering._known) == 1  # one schedule, retuned
    assert remembering._program(clock_schedule(200e6))[0][2].frequency_hz == 200e6


def test_a_changed_field_is_parsed_and_checked_again() -> None:
    pulser = InProcessPulser(World(), "pulser")
    known = clock_schedule(200e6)
    known[2]["amplitude"] = 1
    pulser._program(known)
    changed = clock_schedule(200e6)
    changed[2]["amplitude"] = True  # equal to 1 but not a number the controller takes
    with pytest.raises(RequestError, match="'amplitude' must be a finite number"):
        pulser._program(changed)
    changed[2]["amplitude"] = 1
    changed[0]["t_ns"] = 0.0  # equal to 0 but not an integer
    with pytest.raises(RequestError, match="'t_ns' must be an integer"):
        pulser._program(changed)
    changed[0]["t_ns"] = 0
    changed[2]["amplitude"] = 2.0
    with pytest.raises(RequestError, match="amplitude must be in"):
        pulser._program(changed)
    shorter = clock_schedule(200e6)
    shorter[0]["duration_ns"] = 1_000_000
    assert pulser._program(shorter)[0][0].duration_ns == 1_000_000


def test_a_bad_frequency_on_a_known_schedule_is_refused() -> None:
    pulser = InProcessPulser(World(), "pulser")
    pulser._program(clock_schedule(200e6))
    with pytest.raises(RequestError, match="pulse 2: frequency outside DDS range") as err:
        pulser._program(clock_schedule(1e9))
    assert err.value.code == "out_of_range"
    with pytest.raises(RequestError, match="'frequency_hz' must be a finite number"):
        pulser._program(clock_schedule(float("nan")))
    # and the schedule it knows is as it was
    assert pulser._program(clock_schedule(200e6))[0][2].frequency_hz == 200e6


def test_a_conditional_schedule_is_parsed_every_time() -> None:
    world = World()
    pulser = InProcessPulser(world, "pulser")
    schedule = clock_schedule(200e6)
    schedule.append(
        {
            "t_ns": 84_000_000,
            "duration_ns": 1_000,
            "channel": "clock",
            "condition": {"bits": [["detect", 0]], "accept": [1]},
        }
    )
    first = pulser._program(schedule)
    schedule[4]["condition"]["accept"] = [5]  # not an assignment of one bit
    with pytest.raises(RequestError, match="condition needs bits"):
        pulser._program(schedule)
    assert first[0][4].condition is not None and not pulser._known
