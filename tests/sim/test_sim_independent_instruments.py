"""Issue 19, finding 7: a long pulser run (world time ahead of the clock) must not hold the
replies of the other simulated instruments; each waits for its own measurement only."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import yaml
from simclients import JsonClient, visa

from ionpilot.sim.clock import RealClock
from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import SimSettings

RUN_S = 3.0
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim-lab.yaml"


def lab_instruments() -> dict[str, tuple[str, str]]:
    data = yaml.safe_load(CONFIG.read_text())
    return {name: (d["model"], d["address"]) for name, d in data["instruments"].items()}


def test_a_long_pulser_run_does_not_stall_the_other_instruments() -> None:
    wanted = {k: v for k, v in lab_instruments().items() if k in ("pulser", "rf_drive")}
    with Lab(wanted, SimSettings(seed=5), clock=RealClock(1.0), free_ports=True) as lab:
        resources = lab.resources()
        pulser = JsonClient(resources["pulser"])
        rf = visa(resources["rf_drive"], timeout_ms=10_000)
        try:
            shots = int(RUN_S / 0.02)
            schedule = [{"t_ns": 0, "duration_ns": 20_000_000, "channel": "cool"}]
            replies: list[dict[str, object]] = []
            runner = threading.Thread(
                target=lambda: replies.append(pulser.request("run", shots=shots, schedule=schedule))
            )
            runner.start()
            deadline = time.monotonic() + 10.0
            while lab.world.ready_in() < RUN_S / 2:  # the run has put the world ahead
                assert time.monotonic() < deadline, "the run never started"
                time.sleep(0.005)
            started = time.monotonic()
            assert rf.query("*IDN?").startswith("Rohde&Schwarz")
            waited_s = time.monotonic() - started
            runner.join(RUN_S + 10.0)
            assert replies and replies[0]["ok"] is True
        finally:
            pulser.close()
            rf.close()
    assert waited_s < 0.5, f"rf_drive answered after {waited_s:.2f} s behind the pulser run"
