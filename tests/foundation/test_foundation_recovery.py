"""End to end with real processes: during `ionpilot up`, `ionpilot sim fault ion_loss` is
noticed by the daemon's health monitor, the ion is reloaded by the recovery playbook, and the
clock lock resumes; every decision is in the audit log (SQLite) with its reason."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from labprocs import (
    UpRun,
    command_client,
    daemon_status,
    inject_fault,
    lab_on_free_ports,
    locked_and_idle,
)

from ionpilot.config import load_config

STEP_S = 0.5  # how often the daemon is asked


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ion_loss_during_up_is_recovered_and_the_lock_resumes(tmp_path: Path) -> None:
    lab = lab_on_free_ports(tmp_path, "e2e-recovery")
    config = load_config(lab)
    audit = tmp_path / "var" / "servo" / "audit.sqlite"
    with UpRun(lab, 200, tmp_path) as up:
        with command_client(config, "daemon") as client:

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
        rows = list(
            sqlite3.connect(audit).execute("SELECT kind, action, reason FROM audit ORDER BY id")
        )
        actions = [(k, a) for k, a, _ in rows]
        assert ("trip", "ion_loss") in actions, rows
        assert ("step", "ion_loss.reload") in actions, rows
        assert ("recovered", "ion_loss") in actions, rows
        assert ("escalate", "ion_loss") not in actions, rows
