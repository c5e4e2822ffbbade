"""An operator's `pause` and a clock laser lent to an experiment keep the lock in hold-over until
`resume` or the laser comes back. Before, the recovery engine took the daemon's hold-over for
one a lab error had caused and resumed the lock after its grace (`lab_error_grace`, 2 s): the
lock was interrogating again within ~2 s of a pause (live: 1.6 s), and while an experiment
held the clock laser. The lend also tells the sequencer who borrows it (the lease hook).

The daemon as the `daemon` process assembles it (LockCycle, health monitor, recovery engine) on
the World's manual clock with the in-process harness lab, as tests/harness/test_harness_one_loop
runs it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ionpilot.bus.codec import Request
from ionpilot.bus.settings import BusSettings
from ionpilot.commands.clock_sim import (
    DEFAULT_DRIFT_HZ_PER_S,
    load_calibration,
    load_health,
    load_recovery,
    load_settings,
    sim_world_settings,
)
from ionpilot.harness.lab import WorldLab, world_clock
from ionpilot.servo.daemon import Daemon
from ionpilot.sim.world import World

SEED = 5
HELD_S = 30.0  # well past the recovery engine's lab-error grace (2 s)


class Running:
    """The daemon stepped by hand on virtual time, its operator commands applied between steps
    as its lock thread applies them."""

    def __init__(self, tmp: Path) -> None:
        settings, sim, aux, _ = load_settings(None)
        settings = dataclasses.replace(settings, comb_period=max(settings.comb_period, 60.0))
        pulses, device = load_calibration(None)
        self.world = World(sim_world_settings(sim, "default", SEED, DEFAULT_DRIFT_HZ_PER_S))
        recovery = load_recovery(None)
        lab = WorldLab(self.world, pulses, device, SEED, pulser=settings.pulser, record_truth=False)
        self.leases: list[tuple[str, dict[str, Any] | None]] = []

        def told(laser: str, lease: dict[str, Any] | None) -> bool:
            self.leases.append((laser, lease))
            return True

        self.daemon = Daemon(
            settings,
            pulses,
            BusSettings(publish_port=1, subscribe_port=2),  # never started: nothing is sent
            drivers_call=lambda *a, **k: None,
            command_endpoint="tcp://127.0.0.1:1",
            state_dir=tmp,
            aux_locks=aux,
            clock=world_clock(self.world),
            recovery=recovery,
            health=load_health(None),
            hold_jobs=lambda hold, reason: None,
            device=device,
            lab=lab,
            clock_shots=lab.shots,
            lease_hook=told,
        )
        self.daemon.cycle.start()

    def state(self) -> str:
        return self.daemon.lock.reported_state().value

    def run_for(self, seconds: float) -> list[str]:
        """Step for `seconds` of virtual time; the lock states seen."""
        end = self.world.now() + seconds
        seen = []
        while self.world.now() < end:
            with self.daemon._pending_lock:
                pending, self.daemon._pending = self.daemon._pending, []
            for action, signals in pending:
                self.daemon._apply(action, signals)
            self.daemon._end_expired_leases()
            nap = self.daemon.cycle.cycle()
            left = end - self.world.now()  # a step's own shots may have passed the end
            if nap > 0 and left > 0:
                self.world.advance(min(nap, left))
            seen.append(self.state())
        return seen

    def until_locked(self, within_s: float = 600.0) -> None:
        end = self.world.now() + within_s
        while self.state() != "locked":
            assert self.world.now() < end, f"not locked within {within_s} s: {self.state()}"
            self.run_for(5.0)

    def command(self, name: str, **args: Any) -> Any:
        request = Request(1, "call", "daemon", {"name": name, **args}, client="script")
        request.user = "operator"  # as the bus authenticates a script
        return self.daemon._command(request)


def test_pause_and_a_lent_clock_laser_keep_the_lock_in_holdover(tmp_path: Path) -> None:
    lab = Running(tmp_path)
    try:
        lab.until_locked()
        lab.command("pause")
        seen = lab.run_for(HELD_S)
        assert set(seen) == {"holdover"}, sorted(set(seen))
        lab.command("resume")
        lab.run_for(2.0)
        assert lab.state() == "locked"

        reply = lab.command("lend_laser", laser="clock", owner="experiment rabi", lease_s=60.0)
        token = reply["lease"]
        assert isinstance(token, str) and len(token) == 32 and reply["sequencer_told"]
        assert lab.leases == [
            (
                "clock",
                {"holder": "operator", "owner": "experiment rabi", "token": token, "lease_s": 60.0},
            )
        ]
        seen = lab.run_for(HELD_S)
        assert set(seen) == {"holdover"}, sorted(set(seen))
        lab.command("return_laser", laser="clock", owner="experiment rabi")
        assert lab.leases[-1] == ("clock", None)
        lab.run_for(2.0)
        assert lab.state() == "locked"
    finally:
        assert lab.daemon.recovery is not None
        lab.daemon.recovery.close()
        lab.daemon.server.close()
        lab.daemon.publisher.close()


def test_a_lent_wavemeter_lock_stays_let_go_until_given_back(tmp_path: Path) -> None:
    """The cooling laser lent to an experiment (its cooling scan steps the piezo): the lock
    thread's retry of a wavemeter lock that could not start restarted it one update period
    (5 s) into the lease, and the lock pulled the piezo back to its target mid-scan."""
    lab = Running(tmp_path)
    try:
        lab.until_locked()
        cooling = next(aux for aux in lab.daemon.aux_locks if aux.name == "cooling")

        def state() -> str:
            return cooling.state

        assert state() == "locked"
        lab.command("lend_laser", laser="cooling", owner="experiment cooling-scan", lease_s=600.0)
        lab.run_for(1.0)
        assert state() == "stopped"
        moved_to = cooling.piezo_v + 0.01  # the borrower tunes it by hand (4 MHz further red)
        lab.world.set_laser("369", piezo_v=moved_to)
        states = []
        for _ in range(int(HELD_S)):
            lab.run_for(1.0)
            states.append(state())
        assert set(states) == {"stopped"}, states
        assert lab.world.lasers["369"].piezo_v == moved_to  # nobody moved it back
        lab.command("return_laser", laser="cooling", owner="experiment cooling-scan")
        lab.run_for(30.0)
        assert state() == "locked"
    finally:
        assert lab.daemon.recovery is not None
        lab.daemon.recovery.close()
        lab.daemon.server.close()
        lab.daemon.publisher.close()
