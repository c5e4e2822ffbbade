"""Wavemeter locks of the cooling and repump lasers against the simulated lab."""

import dataclasses
import itertools

import pytest

from ionpilot.commands.clock_sim import default_aux_locks, sim_world_settings
from ionpilot.harness.lab import WorldLab, world_clock
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.outputs import RecordingOutputs, ServoAlarm
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import World


def make(**changes):
    sim = sim_world_settings(SimSettings(), "ideal", 5, 0.0)
    world = World(sim)
    settings = dataclasses.replace(default_aux_locks(sim)["cooling"], update_period=1.0)
    changes.setdefault("integral_gain", 0.5 / (0.4e9 * 1.0))
    settings = dataclasses.replace(settings, **changes)
    outputs = RecordingOutputs()
    lock = AuxLock("cooling", settings, WorldLab(world, seed=5), world_clock(world), outputs)
    lock.start()
    return world, lock, outputs


def run(world, lock, n):
    records = []
    for _ in range(n):
        records.append(lock.step())
        world.advance(lock.settings.update_period)
    return records


def alarms(outputs):
    return [a.kind for a in outputs.of_type(ServoAlarm)]


def test_holds_the_cooling_laser_on_target():
    world, lock, outputs = make()
    records = run(world, lock, 20)
    assert records[-1].state == "locked"
    assert abs(records[-1].error_hz) < lock.settings.tolerance
    assert alarms(outputs) == []


def test_pulls_back_a_200_mhz_detuning_within_the_capture_range():
    world, lock, _ = make()
    run(world, lock, 3)
    world.set_laser("369", piezo_v=lock.piezo_v + 0.5)  # +200 MHz
    lock.piezo_v += 0.5  # someone turned the knob: the lock works from the present voltage
    records = run(world, lock, 30)
    assert records[0].state == "relocking"
    assert records[-1].state == "locked"
    assert abs(records[-1].error_hz) < 5e6


def test_piezo_steps_are_clipped():
    world, lock, _ = make(max_step=0.05)
    world.set_laser("369", piezo_v=70.0 + 2.0)  # +800 MHz
    lock.piezo_v = 72.0
    records = run(world, lock, 4)
    volts = [72.0] + [r.piezo_voltage_v for r in records]
    assert lock.clipped_steps >= 3
    assert max(abs(b - a) for a, b in itertools.pairwise(volts)) <= 0.05 + 1e-12


def test_a_mode_hop_beyond_the_capture_range_freezes_the_piezo_and_alarms():
    world, lock, outputs = make(capture_range=2e9)
    run(world, lock, 3)
    volts = lock.piezo_v
    world.inject("mode_hop", "laser_369")  # ±3 GHz
    records = run(world, lock, 3)
    assert [r.state for r in records] == ["out_of_capture"] * 3
    assert lock.piezo_v == volts
    assert alarms(outputs) == ["out_of_capture"]  # once, not every step
    world.restore("laser_369")
    assert run(world, lock, 3)[-1].state == "locked"


def test_railing_alarms():
    world, lock, outputs = make(piezo_max=70.5)
    lock.settings = dataclasses.replace(lock.settings, target=lock.settings.target + 1e9)
    records = run(world, lock, 10)
    assert records[-1].state == "railed"
    assert records[-1].piezo_voltage_v == 70.5
    assert "railed" in alarms(outputs)


def test_relock_timeout_alarms():
    world, lock, outputs = make(integral_gain=1e-13, proportional_gain=0.0, relock_timeout=5.0)
    world.set_laser("369", piezo_v=71.0)  # +400 MHz, the weak lock cannot pull it in
    lock.piezo_v = 71.0
    run(world, lock, 8)
    assert alarms(outputs) == ["relock_timeout"]


def test_invalid_wavemeter_readings_alarm_after_the_timeout():
    world, lock, outputs = make(invalid_timeout=3.0)
    run(world, lock, 2)
    world.inject("wavemeter_invalid")
    records = run(world, lock, 5)
    assert all(r.state == "invalid" for r in records)
    assert alarms(outputs) == ["invalid_timeout"]
    world.restore("wavemeter")
    assert run(world, lock, 2)[-1].state == "locked"


def test_stopped_lock_does_nothing():
    _, lock, _ = make()
    lock.stop()
    assert lock.step() is None


@pytest.mark.parametrize("name", ["cooling", "repump"])
def test_default_sim_targets_are_where_the_lasers_sit(name):
    sim = sim_world_settings(SimSettings(), "ideal", 5, 0.0)
    world = World(sim)
    settings = default_aux_locks(sim)[name]
    reading = world.wavemeter_read(settings.wavemeter_channel)
    assert reading.frequency_hz == pytest.approx(settings.target, abs=20e6)
