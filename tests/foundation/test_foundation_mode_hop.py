"""End to end with real processes: during `ionpilot up`, `ionpilot sim fault mode_hop laser_369`
puts the cooling laser on another external-cavity mode (±3 GHz). The daemon's health monitor
trips the mode-hop playbook, which sweeps the DLC pro's diode current down through the hop and
back over the bus (the simulated laser's hop is hysteretic: nothing else brings it back), checks
the wavemeter, restarts the wavemeter lock, and the lab returns to locked without the safe state,
with the laser's current set point exactly where it was. Every decision is in the audit log.
On the shared live lab (tests/foundation/sharedlab.py, which also checks that `up` leaves
nothing behind): its audit rows are the ones written after the handover."""

from __future__ import annotations

from typing import Any

import pytest
from labprocs import command_client, daemon_status, inject_fault, locked_and_idle
from sharedlab import LiveUp

STEP_S = 0.25  # how often the daemon is asked


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_live_mode_hop_is_swept_back_and_the_cooling_lock_relocks(shared_up: LiveUp) -> None:
    lab, config, up = shared_up.lab_file, shared_up.config, shared_up.up
    cooling = config.servo.aux_locks["cooling"]
    with (
        command_client(config, "daemon") as daemon,
        command_client(config, "drivers") as drivers,
    ):

        def status() -> dict[str, Any]:
            return daemon_status(daemon)

        def idle() -> bool:
            return locked_and_idle(status())

        def current_a() -> float:
            return float(
                drivers.call("laser_369", "get", {"name": "current"}, timeout=5.0)["value"]
            )

        def cooling_error_hz() -> float:
            channel = cooling.wavemeter_channel
            reading = drivers.call("wavemeter", "call", {"name": "measure", "args": [channel]})
            return cooling.target - float(reading)

        assert up.wait_until(idle, 120, STEP_S), up.tail()
        setpoint = current_a()
        assert abs(cooling_error_hz()) < 50e6
        fault = inject_fault(lab, "mode_hop", "laser_369")
        assert fault.returncode == 0, fault.stdout + fault.stderr
        assert abs(abs(cooling_error_hz()) - 3e9) < 100e6  # hopped by one mode
        assert up.wait_until(lambda: status().get("recovering") != "", 20, STEP_S), status()
        assert up.wait_until(idle, 180, STEP_S), (status(), up.tail())
        final = status()
        assert final["safe_state"] is False
        assert current_a() == pytest.approx(setpoint, abs=1e-6)  # the set point restored
        assert abs(cooling_error_hz()) < 50e6  # on its mode, held by the wavemeter lock
    rows = shared_up.audit_rows()
    actions = [(k, a) for k, a, _ in rows]
    assert ("trip", "mode_hop:cooling") in actions, rows
    (searched,) = [r for k, a, r in rows if (k, a) == ("step", "mode_hop:cooling.mode_search")]
    assert "back on its mode after a" in searched and "current sweep" in searched, rows
    assert ("step", "mode_hop:cooling.wavemeter_relock") in actions, rows
    assert ("recovered", "mode_hop:cooling") in actions, rows
    assert not [r for r in rows if r[0] == "escalate"], rows
