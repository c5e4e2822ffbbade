"""Every recovery playbook and the issue's compound faults, on the simulated lab's virtual time.

Each test locks the clock (a minute of world time), injects faults through the World's API (the
driver-host crash through the adapter) and steps everything; bounds are world seconds.
"""

import dataclasses
import sqlite3
from typing import Any

import pytest

from ionpilot.commands.clock_sim import default_aux_locks, sim_world_settings
from ionpilot.harness import campaign
from ionpilot.servo.clock_lock import LockState
from ionpilot.servo.health import Severity
from ionpilot.servo.settings import (
    ClockLockSettings,
    HealthRule,
    PlaybookSettings,
    RecoverySettings,
)
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import World

LOCK = ClockLockSettings(comb_period=60.0)


def make(seed=1, recovery=None, rules=None, fraction=0.0):
    sim = SimSettings()
    world = World(sim_world_settings(sim, "default", seed, 0.3))
    recovery = recovery or RecoverySettings()
    jobs = []
    run = campaign.build(
        world,
        LOCK,
        recovery,
        default_aux_locks(sim),
        seed,
        rules=rules,
        wavemeter_invalid_fraction=fraction,
        hold_jobs=lambda hold, why: jobs.append(hold),
    )
    campaign.start(run)
    campaign.go_until(run, world.now() + 120.0)
    assert run.lock.state is LockState.LOCKED
    return world, run, jobs


def go(world, run, seconds):
    campaign.go_until(run, world.now() + seconds)


def lock_state(run) -> LockState:
    """Read through a call: mypy must not carry an earlier assert's narrowing past the run."""
    state: LockState = run.lock.state
    return state


def until(world, run, predicate, limit_s, step_s=0.5):
    end = world.now() + limit_s
    while world.now() < end:
        if predicate():
            return world.now()
        go(world, run, step_s)
    raise AssertionError(f"not within {limit_s} s")


def faults(run, kind):
    return [f for f in run.uptime.faults if f.kind == kind]


def recovered_locked(run, kind, bound_s):
    records = faults(run, kind)
    assert records, [f.kind for f in run.uptime.faults]
    for record in records:
        assert not record.escalated
        assert record.recovered_s is not None, record
        assert record.time_to_recover_s <= bound_s, record
    assert run.lock.state is LockState.LOCKED
    assert not run.engine.escalations
    assert run.engine.stuck(run.lock.clock.now()) == 0


def audit_kinds(run):
    return [(row[2], row[3]) for row in run.audit.rows()]


def test_ion_loss_reloads_and_resumes_without_a_line_search():
    world, run, jobs = make()
    steps = run.lock.acquisition_steps
    world.inject("ion_loss")
    go(world, run, 400)
    recovered_locked(run, "ion_loss", 200)
    assert run.lock.acquisition_steps == steps  # hold-over was short: no line search
    actions = audit_kinds(run)
    for action in (
        "ion_loss.repump_check",
        "ion_loss.reload",
        "ion_loss.verify_single_ion",
        "ion_loss.recool",
    ):
        assert ("step", action) in actions
    assert ("resume", "clock_lock") in actions
    assert jobs == [True, False]  # user jobs held, then released
    assert world.oven_current_a() == 0.0 and not world.shutters["399"]


def test_a_dark_ion_is_brought_back_by_the_repump_not_reloaded():
    world, run, _ = make()
    world.inject("ion_dark")
    go(world, run, 60)
    recovered_locked(run, "ion_dark", 15)
    assert not faults(run, "ion_loss")
    assert ("step", "ion_loss.reload") not in audit_kinds(run)


@pytest.mark.parametrize("laser", ["laser_369", "laser_935"])
def test_mode_hop_relocks_the_laser_and_verifies_fluorescence(laser):
    world, run, _ = make(seed=3)
    world.inject("mode_hop", laser)
    go(world, run, 120)
    # a hop to the blue heats the ion out now and then: then the reload follows (compound)
    recovered_locked(run, "mode_hop", 15 if not faults(run, "ion_loss") else 120)
    (record,) = faults(run, "mode_hop")
    assert record.finished_s - record.tripped_s <= 15
    assert world.lasers[laser[-3:]].hop_hz == 0.0
    loop = "cooling" if laser == "laser_369" else "repump"
    assert ("step", f"mode_hop:{loop}.verify_fluorescence") in audit_kinds(run)


def test_cavity_unlock_relocks_and_keeps_the_line():
    world, run, _ = make()
    steps = run.lock.acquisition_steps
    world.inject("cavity_unlock")
    go(world, run, 120)
    recovered_locked(run, "cavity_unlock", 60)
    assert world.cavity_state == 2
    assert run.lock.acquisition_steps == steps


def test_rf_trip_ramps_back_and_reloads_the_lost_ion():
    world, run, _ = make()
    world.inject("rf_trip")
    go(world, run, 400)
    recovered_locked(run, "rf_trip", 300)
    assert world.rf_output and world.rf_power_dbm == 0.0
    assert world.present[0]
    assert ("step", "rf_trip.rf_safe_ramp") in audit_kinds(run)


def test_stray_field_drift_is_recompensated():
    recovery = RecoverySettings(micromotion_period=20.0)
    world, run, _ = make(recovery=recovery)
    world.inject("stray_field_step", "60")  # β = 1.2
    go(world, run, 300)
    recovered_locked(run, "stray_field", 300)
    assert world.micromotion_beta() < 0.05


def test_scheduled_dc_compensation_runs_without_an_alarm():
    world, run, _ = make(recovery=RecoverySettings(dc_compensation_period=300.0))
    go(world, run, 400)
    assert len(faults(run, "stray_field")) == 1
    recovered_locked(run, "stray_field", 200)


def test_a_crashed_driver_host_is_restarted_through_the_supervisor():
    world, run, _ = make()
    run.lab.crash_driver_host()
    go(world, run, 60)
    recovered_locked(run, "driver_stale", 30)
    assert run.lab.restart_requests == 1
    assert ("step", "driver_stale.restart_driver_host") in audit_kinds(run)


def test_one_percent_invalid_wavemeter_readings_trip_nothing():
    world, run, _ = make(fraction=0.01)
    go(world, run, 1800)
    assert run.uptime.faults == []
    assert run.lock.state is LockState.LOCKED


def test_retries_run_out_into_the_safe_state_with_an_alert():
    recovery = RecoverySettings(
        playbooks={"ion_loss": PlaybookSettings(max_retries=1, total_timeout=2000.0)}
    )
    world, run, jobs = make(recovery=recovery)
    world.set_laser("399", enabled=False)  # photoionisation laser dead: no reload possible
    world.inject("ion_loss")
    go(world, run, 700)
    assert run.engine.safe
    (record,) = faults(run, "ion_loss")
    assert record.escalated and "2 attempts" in record.reason
    alert = [r for r in run.audit.rows() if r[2] == "escalate"]
    assert alert and alert[0][5] == "ALERT" and "safe state" in alert[0][4]
    assert run.lock.state is LockState.UNLOCKED
    assert world.oven_current_a() == 0.0 and not world.shutters["399"]
    assert world.rf_output  # RF kept
    assert all(a.state == "stopped" for a in run.auxes.values())  # lasers parked
    assert jobs[-1] is True  # user jobs stay held
    # the operator fixes the laser and resumes: the clock locks again
    world.set_laser("399", enabled=True)
    run.engine.operator_resume("bob")
    until(world, run, lambda: lock_state(run) is LockState.LOCKED, 600)


def test_a_watched_signal_without_playbook_escalates_as_unrecognised():
    rules = {"servo.vacuum.pressure": HealthRule(stale_after=5.0)}  # nobody reads it
    world, run, _ = make(recovery=RecoverySettings(unrecognised_after=150.0), rules=rules)
    go(world, run, 60)
    assert run.engine.safe
    assert run.engine.escalations[0]["kind"] == "unrecognised"
    assert run.health.severity("servo.vacuum.pressure") is Severity.INVALID


def test_long_holdover_reacquires_the_line():
    recovery = RecoverySettings(holdover_drift_uncertainty=1.0)  # 1 Hz/s: beyond the line fast
    world, run, _ = make(recovery=recovery)
    steps = run.lock.acquisition_steps
    world.inject("cavity_unlock")
    go(world, run, 200)
    recovered_locked(run, "cavity_unlock", 200)
    assert run.lock.acquisition_steps > steps
    assert ("reacquire", "clock_lock") in audit_kinds(run)


# ---- compound faults ---------------------------------------------------------------------------


def test_mode_hop_during_an_ion_reload():
    world, run, _ = make(seed=2)
    world.inject("ion_loss")
    until(world, run, lambda: ("wait", "ion_loss.reload") in audit_kinds(run), 30)
    go(world, run, 5)
    world.inject("mode_hop", "laser_369")
    go(world, run, 500)
    assert ("preempt", "ion_loss") in audit_kinds(run)
    recovered_locked(run, "mode_hop", 500)
    recovered_locked(run, "ion_loss", 500)


def test_driver_crash_during_a_cavity_relock():
    world, run, _ = make()
    world.inject("cavity_unlock")
    until(world, run, lambda: ("wait", "cavity_unlock.relock_cavity") in audit_kinds(run), 30)
    run.lab.crash_driver_host()
    go(world, run, 200)
    recovered_locked(run, "driver_stale", 60)
    recovered_locked(run, "cavity_unlock", 120)
    assert world.cavity_state == 2


def test_ion_loss_during_holdover():
    world, run, _ = make()
    world.inject("cavity_unlock")
    until(world, run, lambda: run.lock.state is LockState.HOLDOVER, 10)
    world.inject("ion_loss")
    go(world, run, 400)
    recovered_locked(run, "cavity_unlock", 300)
    recovered_locked(run, "ion_loss", 300)


def test_faults_faster_than_recoveries_end_in_the_safe_state_within_bounds():
    recovery = RecoverySettings(repeat_limit=4, repeat_window=600.0)
    world, run, _ = make(recovery=recovery)
    t0 = world.now()
    # an ion lost again as soon as each reload has brought the lock back (the daemon's shot
    # watch sees a loss within a second, so a fixed 20 s cadence mostly hits an empty trap
    # and folds into one recovery's retries)
    for _ in range(12):
        until(world, run, lambda: run.engine.safe or not run.engine.busy, 300)
        if run.engine.safe:
            break
        world.inject("ion_loss")
        until(world, run, lambda: run.engine.busy, 10)
    go(world, run, max(0.0, t0 + 600 - world.now()))
    assert run.engine.safe
    assert run.engine.stuck(world.now()) == 0
    assert run.engine.in_progress() == 0
    escalation = run.engine.escalations[0]
    assert escalation["t_s"] - t0 < 600
    assert world.oven_current_a() == 0.0


def test_faults_of_several_kinds_at_once_end_locked():
    world, run, _ = make(seed=4)
    world.inject("ion_loss")
    world.inject("cavity_unlock")
    world.inject("mode_hop", "laser_935")
    run.lab.crash_driver_host()
    go(world, run, 600)
    for kind in ("driver_stale", "cavity_unlock", "mode_hop", "ion_loss"):
        recovered_locked(run, kind, 400)


def test_the_runs_are_deterministic():
    def once():
        world, run, _ = make(seed=5)
        world.inject("ion_loss")
        go(world, run, 200)
        return [(f.kind, f.tripped_s, f.recovered_s) for f in run.uptime.faults]

    assert once() == once()


def test_sqlite_audit_file_holds_every_decision(tmp_path):
    sim = SimSettings()
    world = World(sim_world_settings(sim, "default", 1, 0.3))
    path = tmp_path / "audit.sqlite"
    run = campaign.build(
        world, LOCK, RecoverySettings(), default_aux_locks(sim), 1, audit_path=path
    )
    seen: list[Any] = []
    run.audit.sinks.append(seen.append)
    campaign.start(run)
    go(world, run, 120)
    world.inject("ion_loss")
    go(world, run, 300)
    run.audit.close()

    rows = list(sqlite3.connect(path).execute("SELECT kind, action, reason FROM audit"))
    assert ("trip", "ion_loss") in [(k, a) for k, a, _ in rows]
    assert all(reason for _, _, reason in rows)
    assert len(seen) == len(rows)


def test_uptime_and_time_to_recover_are_accounted():
    world, run, _ = make()
    up = run.uptime
    down_before = up.elapsed_s() - up.locked_s  # the initial acquisition
    world.inject("ion_loss")
    go(world, run, 600)
    (record,) = faults(run, "ion_loss")
    down = up.elapsed_s() - up.locked_s - down_before
    assert down == pytest.approx(record.time_to_recover_s, abs=3.0)
    assert 0.8 < up.uptime < 1.0
    assert up.summary()["ion_loss"]["recovered"] == 1
    assert dataclasses.asdict(record)["escalated"] is False
