"""The clock lock against the simulated world: acquisition, tracking, hold-over, loss of the
line, the comb output, and restart from the persisted state without a line search."""

import pytest

from ionpilot.commands.clock_sim import sim_world_settings
from ionpilot.harness.lab import WorldLab, world_clock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.outputs import LockStateChanged, RecordingOutputs, ServoAlarm
from ionpilot.servo.persistence import StateStore
from ionpilot.servo.seams import LabError
from ionpilot.servo.settings import ClockLockSettings
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import World


def make(laser="default", seed=3, store=None, settings=None):
    world = World(sim_world_settings(SimSettings(), laser, seed, 0.3))
    lab = WorldLab(world, seed=seed)
    outputs = RecordingOutputs()
    lock = ClockLock(settings or ClockLockSettings(), lab, world_clock(world), outputs, store)
    return world, lab, lock, outputs


def step_until(lock, state, max_steps=2000):
    for _ in range(max_steps):
        if lock.state is state:
            return
        lock.step()
    raise AssertionError(f"never reached {state}, stuck in {lock.state}")


def run_updates(lock, n):
    updates = []
    for _ in range(n):
        update = lock.step()
        assert lock.state is LockState.LOCKED
        updates.append(update)
    return updates


def offset_hz(world, lock):
    """Probe light minus the ion's line (Hz), without the laser's white noise."""
    return lock.aom_frequency_hz - world.clock_line_aom_hz()


def test_acquires_a_line_37_hz_from_where_it_was_expected():
    world, _, lock, outputs = make("ideal")
    assert offset_hz(world, lock) == pytest.approx(-37.0, abs=0.1)
    assert lock.start() is LockState.ACQUIRING
    step_until(lock, LockState.LOCKED, max_steps=200)
    assert 0 < lock.acquisition_steps < 60
    assert abs(offset_hz(world, lock)) < 2.0
    changes = [(r.previous, r.state) for r in outputs.of_type(LockStateChanged)]
    assert changes == [("unlocked", "acquiring"), ("acquiring", "locked")]
    updates = run_updates(lock, 100)
    mean_excitation = sum(u.excitation_low + u.excitation_high for u in updates) / 200
    assert 0.4 < mean_excitation < 0.6  # sitting on the half-width points


def test_second_integrator_learns_the_cavity_drift():
    world, _, lock, _ = make("default")
    lock.start()
    step_until(lock, LockState.LOCKED)
    updates = run_updates(lock, 1500)  # 50 min
    drift = [u.drift_hz_per_s for u in updates[-500:]]
    assert sum(drift) / len(drift) == pytest.approx(0.3, abs=0.01)
    assert abs(offset_hz(world, lock)) < 2.0


def test_holdover_steers_on_the_drift_estimate_and_resumes():
    world, _, lock, _ = make("default")
    lock.start()
    step_until(lock, LockState.LOCKED)
    run_updates(lock, 1500)  # 50 min: the drift integrator has converged (as above)
    searched = lock.acquisition_steps
    lock.pause("ion reload")
    assert lock.state is LockState.HOLDOVER
    world.advance(120.0)  # 36 Hz of cavity drift
    assert lock.step() is None
    assert world.dds["clock_aom"]["frequency_hz"] == pytest.approx(lock.aom_frequency_hz)
    assert abs(offset_hz(world, lock)) < 3.0
    lock.resume()
    updates = run_updates(lock, 50)  # asserts locked throughout
    assert lock.acquisition_steps == searched
    assert sum(u.excitation_low + u.excitation_high for u in updates) / 100 > 0.35


def test_a_long_holdover_reverifies_the_line():
    world, _, lock, _ = make("default")
    lock.start()
    step_until(lock, LockState.LOCKED)
    lock.pause()
    world.advance(lock.settings.holdover_limit + 1)
    lock.resume()
    assert lock.state is LockState.ACQUIRING
    step_until(lock, LockState.LOCKED)


def test_losing_the_ion_loses_the_line_then_gives_up_with_an_alarm():
    world, _, lock, outputs = make("ideal")
    lock.start()
    step_until(lock, LockState.LOCKED)
    world.inject("ion_loss")
    step_until(lock, LockState.ACQUIRING, max_steps=5)
    step_until(lock, LockState.UNLOCKED, max_steps=1000)
    kinds = [a.kind for a in outputs.of_type(ServoAlarm)]
    assert kinds == ["line_lost", "line_not_found"]
    assert lock.step() is None  # unlocked: nothing to do until told


def test_the_optical_frequency_through_the_comb():
    world, _, lock, _ = make("default")
    lock.start()
    step_until(lock, LockState.LOCKED)
    run_updates(lock, 300)
    record = lock.measure_optical_frequency()
    assert record is not None
    assert record.mode_number == world.comb_mode_number
    assert record.laser_frequency_hz == pytest.approx(world.laser_frequency_hz("435"), abs=2.0)
    nu0 = world.settings.ion.clock_frequency
    assert abs(record.output_frequency_hz - nu0) < 5.0


class FailingLab:
    def __init__(self, lab):
        self.lab = lab

    def interrogate(self, probe, aom_frequency_hz, n_probes):
        raise LabError("pulser timeout")

    def __getattr__(self, name):
        return getattr(self.lab, name)


def test_a_lab_error_while_locked_goes_to_holdover_with_an_alarm():
    _, lab, lock, outputs = make("ideal")
    lock.start()
    step_until(lock, LockState.LOCKED)
    lock.lab = FailingLab(lab)
    assert lock.step() is None
    assert lock.state is LockState.HOLDOVER
    assert outputs.of_type(ServoAlarm)[-1].kind == "lab_error"


def test_restart_resumes_from_the_persisted_state_without_a_line_search(tmp_path):
    store = StateStore(tmp_path / "state")
    world, lab, lock, _ = make("default", store=store)
    assert lock.start() is LockState.ACQUIRING  # nothing saved yet
    assert "no saved state" in str(lock.restore_error)
    step_until(lock, LockState.LOCKED)
    run_updates(lock, 600)  # 20 min: the drift integrator has converged
    lock.persist()
    saved_drift = lock.drift_hz_per_s
    del lock  # the daemon dies ...
    world.advance(5.0)  # ... and comes back 5 s later
    restarted = ClockLock(ClockLockSettings(), lab, world_clock(world), RecordingOutputs(), store)
    assert restarted.start() is LockState.LOCKED
    assert restarted.restore_error is None
    assert restarted.drift_hz_per_s == saved_drift
    assert abs(offset_hz(world, restarted)) < 3.0
    updates = run_updates(restarted, 300)
    assert restarted.acquisition_steps == 0
    assert sum(u.excitation_low + u.excitation_high for u in updates) / 600 > 0.4
    assert abs(offset_hz(world, restarted)) < 2.0


def test_a_stale_or_corrupt_state_file_means_a_fresh_acquisition(tmp_path):
    store = StateStore(tmp_path)
    world, lab, lock, _ = make("ideal", store=store)
    lock.start()
    step_until(lock, LockState.LOCKED)
    lock.persist()
    world.advance(lock.settings.max_state_age + 10)
    outputs = RecordingOutputs()
    late = ClockLock(ClockLockSettings(), lab, world_clock(world), outputs, store)
    assert late.start() is LockState.ACQUIRING
    assert "stale" in str(late.restore_error)
    assert outputs.of_type(ServoAlarm)[0].kind == "state_rejected"
    store.path.write_text('{"version": 1, "aom_frequency_hz": ')
    broken = ClockLock(ClockLockSettings(), lab, world_clock(world), None, store)
    assert broken.start() is LockState.ACQUIRING
    assert "corrupt" in str(broken.restore_error)


def test_locked_without_corrections_is_reported_as_holdover():
    """Issue 19, finding 4: the servo thread stuck in an interrogation (its driver host killed
    or frozen) still holds `locked`; what anyone is told is hold-over once no correction has
    come within the correction deadline, and `locked` again with the next correction."""
    world, _, lock, _ = make("ideal")
    lock.start()
    step_until(lock, LockState.LOCKED, max_steps=200)
    run_updates(lock, 3)
    assert lock.reported_state() is LockState.LOCKED
    deadline = lock.correction_deadline_s
    assert deadline >= 2 * lock.update_interval_s
    world.advance(deadline * 0.9)  # no step: no interrogation, no correction
    assert lock.reported_state() is LockState.LOCKED
    world.advance(deadline * 0.2)
    assert lock.state is LockState.LOCKED  # the servo thread has not noticed
    assert lock.reported_state() is LockState.HOLDOVER
    run_updates(lock, 1)
    assert lock.reported_state() is LockState.LOCKED
