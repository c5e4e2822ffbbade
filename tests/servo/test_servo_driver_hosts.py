"""Every driver host the lab file declares is watched (issue 19): a lab with two driver hosts,
`drivers` and `lasers` (the clock laser and the wavemeter); the `lasers` host going silent runs
its own stale-driver playbook on virtual time (naming it, restarting it, holding the lock and the
jobs until its heartbeat and its instruments are back), and the live daemon subscribes to both
hosts' heartbeats on a real hub."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ionpilot.bus.codec import Codec, Heartbeat, Telemetry
from ionpilot.bus.hub import Hub
from ionpilot.bus.pubsub import HeartbeatPublisher, Publisher, Subscriber
from ionpilot.bus.settings import BusSettings
from ionpilot.commands.clock_sim import default_aux_locks, sim_world_settings
from ionpilot.commands.daemon import driver_hosts
from ionpilot.config import LabConfig, load_config
from ionpilot.core.clock import SystemClock
from ionpilot.harness import campaign
from ionpilot.servo.clock_lock import LockState
from ionpilot.servo.daemon import Daemon
from ionpilot.servo.health import Severity
from ionpilot.servo.playbooks import HEARTBEAT, heartbeat_signal
from ionpilot.servo.settings import ClockLockSettings, PulseCalibration, RecoverySettings
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import World

SIM_LAB = Path(__file__).resolve().parents[2] / "configs" / "sim-lab.yaml"


def two_host_lab(tmp: Path) -> LabConfig:
    """The default lab with the clock laser and the wavemeter on a second driver host."""
    path = tmp / "lab.yaml"
    path.write_text(
        f"include: {SIM_LAB}\n"
        f"lab: {{name: two-hosts, data_dir: {tmp / 'var'}}}\n"
        "bus: {security: {curve: false}}\n"
        "processes:\n  lasers: {command_port: 15699}\n"
        "instruments:\n  laser_435: {host: lasers}\n  wavemeter: {host: lasers}\n"
    )
    return load_config(path)


def lock_state(run: campaign.Campaign) -> LockState:
    """Read through a call: mypy must not carry an earlier assert's narrowing past the run."""
    state: LockState = run.lock.state
    return state


class SilentHost:
    """A driver host's heartbeat on virtual time: beating until `die()`, back after a restart."""

    def __init__(self, world: World, restart_s: float) -> None:
        self.world = world
        self.restart_s = restart_s
        self.died_at: float | None = None
        self.back_at: float | None = None
        self.restarts: list[str] = []

    def last_beat_at(self) -> float:
        now = self.world.now()
        if self.died_at is None:
            return now
        if self.back_at is not None and now >= self.back_at:
            self.died_at = self.back_at = None
            return now
        return self.died_at

    def die(self) -> None:
        self.died_at = self.world.now()

    def restart(self, name: str) -> None:
        self.restarts.append(name)
        if self.died_at is not None:
            self.back_at = self.world.now() + self.restart_s


def test_a_second_driver_host_going_silent_runs_its_own_playbook(tmp_path: Path) -> None:
    hosts = driver_hosts(two_host_lab(tmp_path))
    assert set(hosts) == {"drivers", "lasers"}
    assert set(hosts["lasers"]) == {"laser_435", "wavemeter"}
    settings = RecoverySettings()
    sim = SimSettings()
    world = World(sim_world_settings(sim, "default", 1, 0.3))
    jobs: list[bool] = []
    run = campaign.build(
        world,
        ClockLockSettings(comb_period=60.0),
        settings,
        default_aux_locks(sim),
        1,
        hold_jobs=lambda hold, why: jobs.append(hold),
        driver_hosts=hosts,
    )
    lasers = SilentHost(world, restart_s=3.0)
    beat = heartbeat_signal(settings, "lasers")
    assert beat == "servo.lasers.heartbeat" and beat != HEARTBEAT
    run.health.feed(beat, lasers.last_beat_at)
    run.engine.ctx.restart_process = lasers.restart  # the supervisor's restart, by name
    campaign.start(run)
    campaign.go_until(run, world.now() + 120.0)
    assert lock_state(run) is LockState.LOCKED
    assert run.health.severity(beat) is Severity.OK

    lasers.die()
    died = world.now()
    while run.engine.active is None and world.now() < died + 10.0:
        campaign.go_until(run, world.now() + 0.5)
    assert run.engine.active is not None
    assert run.engine.active.playbook.name == "driver_stale:lasers"
    assert run.health.severity(beat) is Severity.INVALID  # stale after 2 s
    assert run.health.severity(HEARTBEAT) is Severity.OK  # the other host is fine
    assert lock_state(run) is LockState.HOLDOVER  # held while the host it needs is away
    assert jobs == [True]
    campaign.go_until(run, world.now() + 60.0)

    faults = [f for f in run.uptime.faults if f.kind == "driver_stale"]
    assert [f.playbook for f in faults] == ["driver_stale:lasers"]
    assert faults[0].recovered_s is not None and not faults[0].escalated
    assert faults[0].time_to_recover_s is not None and faults[0].time_to_recover_s < 30.0
    assert lasers.restarts == ["lasers"]  # that host, not the daemon's own
    assert run.lab.restart_requests == 0
    steps = [(str(row[3]), str(row[4])) for row in run.audit.rows("step")]
    restart = [
        reason for action, reason in steps if action == "driver_stale:lasers.restart_driver_host"
    ]
    assert restart == ["asked the supervisor to restart 'lasers'"]
    verify = [reason for action, reason in steps if action.endswith("verify_instruments")]
    assert any("'lasers' instruments answer (laser_435.lock_state" in r for r in verify), verify
    assert lock_state(run) is LockState.LOCKED
    assert jobs == [True, False]


def test_the_live_daemon_hears_every_driver_host(tmp_path: Path) -> None:
    """Both hosts' `hb.<host>` on a real hub reach the daemon's health feeds; a beat naming
    another host inside (`src: drivers` on `hb.lasers`) makes nobody alive but its topic's."""
    base = BusSettings(publish_port=0, subscribe_port=0, heartbeat_period=0.1)
    with Hub(base) as hub:
        bus = dataclasses.replace(
            base,
            publish_port=int(hub.publish_endpoint.rsplit(":", 1)[1]),
            subscribe_port=int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
        )
        daemon = Daemon(
            ClockLockSettings(),
            PulseCalibration(),
            bus,
            drivers_call=lambda *a, **k: None,
            command_endpoint="tcp://127.0.0.1:0",
            state_dir=tmp_path,
            recovery=RecoverySettings(),
            driver_hosts={"drivers": ("rf_drive",), "lasers": ("laser_435",)},
        )
        watch = daemon.host_watch
        assert watch is not None and watch.processes == ("drivers", "lasers")
        forger = Publisher(bus, "lasers")
        codec = Codec(bus.pubsub_bytes)
        lasers = HeartbeatPublisher(bus, "lasers")
        watch.start()
        try:
            deadline = time.monotonic() + 10.0
            while watch.last_beat_at("lasers") is None and time.monotonic() < deadline:
                # the topic of one host, the name of another inside
                forger._emit(b"hb.lasers", codec.encode_heartbeat(Heartbeat(1, 0, "drivers", 0.1)))
                lasers.beat()
                time.sleep(0.05)  # polling a condition against a deadline, not synchronising
            assert watch.last_beat_at("lasers") is not None
            assert watch.last_beat_at("drivers") is None  # the forged name counted for nothing
            recovery = daemon.recovery
            assert recovery is not None
            recovery.health.evaluate()
            heard = recovery.health.signals[heartbeat_signal(RecoverySettings(), "lasers")]
            assert heard.last_t is not None and SystemClock().now() - heard.last_t < 5.0
            assert recovery.health.signals[HEARTBEAT].last_t is None
            # the daemon's lock-state watchdog speaks on the bus, outside the lock thread
            with Subscriber(bus, ["servo.clock.state"]) as states:
                told = None
                for _ in range(100):
                    daemon.state_watchdog.beat("locked")
                    told = states.recv(timeout=0.05)
                    if told is not None:
                        break
                assert isinstance(told, Telemetry) and told.value == "unlocked"  # as reported
        finally:
            lasers.stop()
            forger.close()
            watch.stop()
            daemon.server.close()
            daemon.publisher.close()
            recovery = daemon.recovery
            if recovery is not None:
                recovery.close()
