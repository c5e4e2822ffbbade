"""End to end with real processes: during `ionpilot up`, `ionpilot sim fault ion_loss` is
noticed by the daemon's health monitor, the ion is reloaded by the recovery playbook, and the
clock lock resumes; every decision is in the audit log (SQLite) with its reason. On the shared
live lab (tests/foundation/sharedlab.py): its audit rows are the ones written after the
handover."""

from __future__ import annotations

from typing import Any

import pytest
from labprocs import command_client, daemon_status, inject_fault, locked_and_idle
from sharedlab import LiveUp

STEP_S = 0.5  # how often the daemon is asked


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ion_loss_during_up_is_recovered_and_the_lock_resumes(shared_up: LiveUp) -> None:
    lab, up = shared_up.lab_file, shared_up.up
    with command_client(shared_up.config, "daemon") as client:

        def status() -> dict[str, Any]:
            return daemon_status(client)

        def idle() -> bool:
            return locked_and_idle(status())

        assert up.wait_until(idle, 90, STEP_S), up.text()
        fault = inject_fault(lab, "ion_loss")
        assert fault.returncode == 0, fault.stdout + fault.stderr
        recovering = up.wait_until(lambda: status().get("recovering") == "ion_loss", 20, STEP_S)
        assert recovering, status()
        assert up.wait_until(idle, 150, STEP_S), (status(), up.tail(30))
        final = status()
        assert final["safe_state"] is False
    rows = shared_up.audit_rows()
    actions = [(k, a) for k, a, _ in rows]
    assert ("trip", "ion_loss") in actions, rows
    assert ("step", "ion_loss.reload") in actions, rows
    assert ("recovered", "ion_loss") in actions, rows
    assert ("escalate", "ion_loss") not in actions, rows
