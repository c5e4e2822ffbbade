"""The daemon's recovery wiring (`LiveRecovery`) on the simulated lab's virtual time: health
topics, the aggregate, audit entries as events, acknowledgement by a named sender."""

from ionpilot.commands.clock_sim import default_aux_locks, sim_world_settings
from ionpilot.harness.lab import WorldLab, world_clock
from ionpilot.servo.aux_lock import AuxLock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.live_recovery import LiveRecovery
from ionpilot.servo.settings import (
    ClockLockSettings,
    HealthSettings,
    PulseCalibration,
    RecoverySettings,
)
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import World


def test_live_recovery_publishes_health_and_audit_events(tmp_path):
    sim = SimSettings()
    world = World(sim_world_settings(sim, "default", 1, 0.3))
    lab = WorldLab(world, seed=1)
    clock = world_clock(world)
    lock = ClockLock(ClockLockSettings(comb_period=60.0), lab, clock)
    auxes = [AuxLock(n, s, lab, clock) for n, s in default_aux_locks(sim).items()]
    topics: list[tuple[str, dict]] = []
    events: list[tuple[str, str, str]] = []
    live = LiveRecovery(
        lab=lab,
        lock=lock,
        auxes=auxes,
        clock=clock,
        pulses=PulseCalibration(),
        recovery=RecoverySettings(),
        health=HealthSettings(),
        audit_path=tmp_path / "audit.sqlite",
        publish=lambda topic, fields: topics.append((topic, fields)),
        publish_event=lambda kind, message, severity, data: events.append(
            (kind, message, severity)
        ),
    )
    for aux in auxes:
        aux.start()
    lock.start()

    def run(seconds):
        end = world.now() + seconds
        while world.now() < end:
            if live.tick():
                world.advance(0.5)
            elif lock.state in (LockState.LOCKED, LockState.ACQUIRING):
                lock.step()
            else:
                world.advance(0.5)

    run(120)
    assert lock.state is LockState.LOCKED
    live.acknowledge("setup")  # start-up alarms (signals not yet read) are acknowledged
    world.inject("ion_loss")
    run(300)
    assert live.engine.escalations == []
    assert lock.state is LockState.LOCKED
    assert live.status()["safe_state"] is False
    fluorescence = [f for t, f in topics if t == "health.servo.ion.fluorescence"]
    assert any(f["severity"] == "MAJOR" for f in fluorescence)
    assert fluorescence[-1]["latched"] == "MAJOR"  # latched until acknowledged
    assert any(t == "health.aggregate" for t, _ in topics)
    assert any(t == "servo.uptime" for t, _ in topics)
    kinds = [k for k, _, _ in events]
    assert "recovery_trip" in kinds and "recovery_recovered" in kinds
    assert live.acknowledge("carol@gui") == ["servo.ion.fluorescence"]
    assert events[-1][0] == "recovery_ack" and "carol@gui" in events[-1][1]
    assert (tmp_path / "audit.sqlite").exists()
    live.close()
