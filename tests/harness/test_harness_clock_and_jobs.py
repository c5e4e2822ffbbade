"""The clock stays locked while a stream of user jobs runs, on virtual time: the daemon's own
assembly (its LockCycle, health and recovery, its lock hold) on the default five-ion World in
process, its interrogations clock jobs in the sequencer service's queue, and Bell circuits from a
user played on the same World's pulse controller by the trap backend, the service's `ClockShare`
(the clock's minimum duty from the lab file's lock settings) deciding who runs. For ten
simulated minutes after the first lock: the lock stays locked, the servo keeps its configured
minimum interrogation rate (its share `clock_duty` reserves a fluorescence check per
interrogation, and the servo's own gaps between its jobs come out of the users' time, not the
clock's: `ClockShare`), the users get the rest, and every user result names the lock state it ran
under (and its fractional offset and calibration).

The lock's reported state is sampled after every lock cycle and every controller run: a lock
sharing the controller updates less often than alone (every ~6 s at its minimum rate here, not
2 s), and was reported `holdover` between its updates before its correction deadline allowed
for that (locked fraction 0.71)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ionpilot.bus.settings import BusSettings
from ionpilot.commands.clock_sim import (
    DEFAULT_DRIFT_HZ_PER_S,
    load_calibration,
    load_health,
    load_recovery,
    load_settings,
    sim_world_settings,
)
from ionpilot.harness.lab import world_clock
from ionpilot.harness.shared_controller import QueuedWorldLab, SharedController
from ionpilot.servo.daemon import Daemon
from ionpilot.servo.interrogation import min_interrogation_rate_hz
from ionpilot.sim.world import World

ROOT = Path(__file__).resolve().parents[2]
SEED = 5
MINUTES_LOCKED = 10
BELL = (ROOT / "tests" / "sequencer" / "qasm" / "bell_v2.qasm").read_text()
BELL_SHOTS = 2000  # ~3 s of controller time: two slices, the clock's jobs between them
QUEUED_USERS = 2  # the user keeps this many Bell jobs waiting
CALIBRATION = {"pi_time": {"value": 1e-5, "unit": "s"}}


def locked_fraction(states: list[tuple[float, str]], start: float, end: float) -> float:
    """Time-weighted share of [start, end] spent `locked` (`states`: (time, state) changes)."""
    locked = 0.0
    for (t, state), (t_next, _) in zip(states, [*states[1:], (end, "")], strict=True):
        a, b = max(t, start), min(t_next, end)
        if state == "locked" and b > a:
            locked += b - a
    return locked / (end - start)


def test_the_clock_stays_locked_while_user_jobs_share_the_controller(tmp_path: Path) -> None:
    cpu = time.process_time()
    lock_settings, sim, aux, _ = load_settings(None)
    pulses, device = load_calibration(None)
    world_settings = sim_world_settings(sim, "default", SEED, DEFAULT_DRIFT_HZ_PER_S)
    world = World(dataclasses.replace(world_settings, n_ions=sim.n_ions))  # the whole chain
    assert world.settings.n_ions == 5
    lab = QueuedWorldLab(
        world, pulses, device, SEED, pulser=lock_settings.pulser, record_truth=False
    )
    shared = SharedController(
        lab, device, lock_settings, pulses, calibrations=lambda: dict(CALIBRATION)
    )

    def no_bus(*args: object, **kwargs: object) -> object:
        raise AssertionError("the daemon reached for the bus instead of its lab")

    daemon = Daemon(
        lock_settings,
        pulses,
        BusSettings(publish_port=1, subscribe_port=2),  # nothing is sent: never started
        drivers_call=no_bus,
        command_endpoint="tcp://127.0.0.1:1",
        state_dir=tmp_path / "daemon",
        aux_locks=aux,
        clock=world_clock(world),
        recovery=load_recovery(None),
        health=load_health(None),
        hold_jobs=shared.hold_jobs,
        device=device,
        lab=lab,
        clock_shots=shared.shots,
        lock_hold=shared.hold_for_lock,
    )

    def users() -> None:
        waiting = [j for j in shared.queue.jobs("queued") if j.kind == "user"]
        for _ in range(QUEUED_USERS - len(waiting)):
            shared.submit(BELL, BELL_SHOTS, client="alice")

    try:
        shared.start(daemon)
        while not any(state == "locked" for _, state in shared.lock_states):
            assert world.now() < 600.0, f"no lock in 10 min: {shared.lock_states}"
            shared.run_until(world.now() + 5.0, users)
        first_lock = next(t for t, state in shared.lock_states if state == "locked")
        interrogations_0 = lab.calls
        clock_s0, user_s0 = shared.played.seconds["clock"], shared.played.seconds["user"]
        end = first_lock + MINUTES_LOCKED * 60.0
        shared.run_until(end, users)
    finally:
        shared.close()
        assert daemon.recovery is not None
        daemon.recovery.close()
        daemon.heartbeat.stop()
        daemon.server.close()
        daemon.publisher.close()
    span = world.now() - first_lock
    fraction = locked_fraction(shared.lock_states, first_lock, world.now())
    clock_duty = (shared.played.seconds["clock"] - clock_s0) / span
    user_duty = (shared.played.seconds["user"] - user_s0) / span
    rate = (lab.calls - interrogations_0) / span
    done = [j for j in shared.queue.jobs("done") if j.kind == "user"]
    # the stream waited (held) while the lock was acquired: submitted before the first lock
    held_jobs = sum(
        1
        for j in shared.queue.jobs()
        if j.kind == "user" and j.submitted_s - world.epoch_unix < first_lock
    )
    failed = [j for j in shared.queue.jobs("failed") if j.kind == "user"]
    print(
        f"first lock at {first_lock:.1f} s; over {span:.0f} s: locked {fraction:.4f}, clock duty "
        f"{clock_duty:.3f} (min {shared.share.min_duty:.3f}), user duty {user_duty:.3f}, "
        f"interrogations {rate:.3f}/s (min {min_interrogation_rate_hz(lock_settings):.3f}/s), "
        f"{len(done)} user jobs done, {len(failed)} failed, held at first lock {held_jobs}, "
        f"states {shared.lock_states}, cpu {time.process_time() - cpu:.1f} s"
    )
    assert fraction >= 0.95, shared.lock_states
    # the policy: the clock keeps `min_duty` of the controller's time while users wait, within
    # one swing of its credit (±one user slice) over the span; it takes no more than that
    swing = 2 * shared.share.max_user_slice_s / span
    assert shared.share.min_duty - swing <= clock_duty <= shared.share.min_duty + swing
    # the configured minimum interrogation rate, its fluorescence checks (clock jobs too) and the
    # servo's own time between its jobs notwithstanding
    assert rate >= min_interrogation_rate_hz(lock_settings)
    # the users get the rest, less the servo's own gaps (the controller idle while the owed
    # clock's next job comes: 0.016 of the time here)
    assert user_duty >= 1 - shared.share.min_duty - 0.02
    assert not failed, [j.error for j in failed]
    assert len(done) >= 100
    assert held_jobs >= QUEUED_USERS  # the stream waited (held) while the lock was acquired
    # every Bell job played in two slices of at most 2 s, the clock's jobs between them
    assert shared.played.runs["user"] >= 2 * len(done)
    for job in done:
        assert job.started_s is not None
        started = job.started_s - world.epoch_unix
        assert started >= first_lock - 1e-9  # held until the lock
        result = job.result
        assert result is not None
        lock = result["lock"]
        assert lock["state_at_start"] == "locked" and lock["state"] == "locked", lock
        offset = lock["fractional_offset"]
        if offset is None:  # the lock's first locked update had not come yet
            assert started < first_lock + 5.0, (started, lock)
        else:
            assert isinstance(offset, float) and abs(offset) < 1e-13, lock
        assert result["calibration"] == CALIBRATION
        counts = result["counts"]
        assert sum(counts.values()) == BELL_SHOTS
        assert (counts.get("00", 0) + counts.get("11", 0)) / BELL_SHOTS > 0.9, counts
