"""Pulse schedules: validation names the offending event and nothing runs; JSON; defcals; the
clock interrogation as a pulse program."""

import dataclasses
import math

import openqasm3
import pytest

from ionpilot.sequencer import (
    Circuit,
    Schedule,
    ScheduleError,
    SimulatedChain,
    clock_interrogation,
    compile_program,
    native_defcals,
    run_program,
    validate_schedule,
)
from ionpilot.sequencer.settings import DeviceSettings

DEVICE = DeviceSettings()


def bell_schedule() -> Schedule:
    c = Circuit(2, 2)
    c.h(0).cx(0, 1).measure(0, 0).measure(1, 1)
    return compile_program(c, DEVICE).schedule


def replace_event(schedule: Schedule, name: str, **changes) -> Schedule:
    events = [dataclasses.replace(e, **changes) if e.name == name else e for e in schedule.events]
    return dataclasses.replace(schedule, events=events)


def first_pulse(schedule: Schedule) -> str:
    return next(e.name for e in schedule.events if e.kind == "pulse" and e.sideband_hz == 0)


class Spy:
    name = "spy"

    def __init__(self):
        self.calls = 0

    def run(self, schedule, shots, seed=None):
        self.calls += 1
        raise AssertionError("must not run")


def check_refused(schedule: Schedule, event: str, fragment: str):
    spy = Spy()
    program = compile_program(Circuit(2, 2).h(0).measure(0, 0), DEVICE)
    program.schedule = schedule
    with pytest.raises(ScheduleError) as info:
        run_program(program, spy, DEVICE, 10, 1)
    assert event in info.value.event_names
    assert fragment in str(info.value)
    assert spy.calls == 0
    # the simulator refuses it on its own too
    with pytest.raises(ScheduleError):
        SimulatedChain(DEVICE, ideal=True).run(schedule, 10, 1)


def test_valid_schedule_passes():
    validate_schedule(bell_schedule(), DEVICE)


def test_overlap_on_a_channel():
    s = bell_schedule()
    name = first_pulse(s)
    cool_end = next(e.end_mu for e in s.events if e.name == "cool")
    pulse = next(e for e in s.events if e.name == name)
    clash = dataclasses.replace(pulse, name="clash", start_mu=pulse.start_mu + 4)
    s = dataclasses.replace(s, events=[*s.events, clash])
    assert cool_end > 0
    check_refused(s, "clash", "overlaps")


def test_off_grid():
    s = bell_schedule()
    name = first_pulse(s)
    start = next(e.start_mu for e in s.events if e.name == name)
    check_refused(replace_event(s, name, start_mu=start + 1), name, "grid")


def test_amplitude_above_one():
    s = bell_schedule()
    name = first_pulse(s)
    check_refused(replace_event(s, name, amplitude=1.2), name, "amplitude 1.2")


def test_frequency_outside_aom_band():
    s = bell_schedule()
    name = first_pulse(s)
    check_refused(replace_event(s, name, frequency_hz=150e6), name, "outside the AOM band")


def test_ms_sideband_outside_band():
    s = bell_schedule()
    name = next(e.name for e in s.events if e.sideband_hz > 0)
    check_refused(replace_event(s, name, sideband_hz=12e6), name, "outside the AOM band")


def test_unknown_channel_and_short_pulse_and_frames():
    s = bell_schedule()
    name = first_pulse(s)
    check_refused(replace_event(s, name, channel="laser_9000"), name, "unknown channel")
    check_refused(replace_event(s, name, duration_mu=4), name, "below the channel minimum")
    pulse = next(e for e in s.events if e.name == name)
    other = dataclasses.replace(pulse, name="twin", channel="raman_global")
    check_refused(dataclasses.replace(s, events=[*s.events, other]), "twin", "on frame 'q")


def test_total_length_and_event_rate():
    s = bell_schedule()
    check_refused(replace_event(s, "cool", duration_mu=3_000_000_000), "cool", "over the 2 s limit")
    burst = [
        dataclasses.replace(
            s.events[0],
            name=f"ttl{i}",
            channel="pump_369",
            kind="ttl",
            start_mu=104 * i,
            duration_mu=100,
        )
        for i in range(1000)
    ]
    small = dataclasses.replace(s, events=[e for e in s.events if e.channel != "pump_369"] + burst)
    with pytest.raises(ScheduleError) as info:
        validate_schedule(small, DEVICE)
    assert any("RTIO underflow" in what for _, what in info.value.problems)


def test_json_round_trip():
    s = bell_schedule()
    again = Schedule.loads(s.dumps())
    assert again == s


def test_defcals_parse_as_openqasm3():
    text = native_defcals(DEVICE)
    program = openqasm3.parse(text)
    kinds = {type(st).__name__ for st in program.statements}
    assert "CalibrationDefinition" in kinds
    assert text.count("defcal r(") == DEVICE.ions


def test_global_beam_used_for_common_rotations():
    c = Circuit(3, 3)
    for q in range(3):
        c.ry(math.pi / 2, q)
    for q in range(3):
        c.measure(q, q)
    s = compile_program(c, DEVICE).schedule
    assert any(e.channel == "raman_global" for e in s.events)


def test_rabi_interrogation_matches_line_shape():
    t = 80e-3
    chain = SimulatedChain(DEVICE, ideal=True)
    for detuning in (0.0, 3.0, 5.0, 0.3993 / t, 10.0):
        s = clock_interrogation(DEVICE, "rabi", t, detuning)
        validate_schedule(s, DEVICE)
        p = chain.run(s, 10, 1).probabilities.get(1, 0.0)
        omega = math.pi / t
        delta = 2 * math.pi * detuning
        expected = (
            omega**2 / (omega**2 + delta**2) * math.sin(t * math.hypot(omega, delta) / 2) ** 2
        )
        assert p == pytest.approx(expected, abs=1e-9)


def test_ramsey_interrogation_fringe():
    chain = SimulatedChain(DEVICE, ideal=True)
    tau, free = 1e-3, 0.2
    t_eff = free + 4 * tau / math.pi
    for detuning in (0.0, 1 / (4 * t_eff)):
        s = clock_interrogation(DEVICE, "ramsey", free, detuning, ramsey_pulse_s=tau)
        p = chain.run(s, 10, 1).probabilities.get(1, 0.0)
        assert p == pytest.approx(0.5 * (1 + math.cos(2 * math.pi * detuning * t_eff)), abs=2e-3)
