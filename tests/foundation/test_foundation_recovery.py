"""End to end with real processes: during `ionpilot up`, `ionpilot sim fault ion_loss` is
noticed by the daemon's health monitor, the ion is reloaded by the recovery playbook, and the
clock lock resumes; every decision is in the audit log (SQLite) with its reason."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from labprocs import lab_on_free_ports

from ionpilot.bus.client import CommandClient
from ionpilot.config import load_config


def wait_for(predicate, seconds: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ion_loss_during_up_is_recovered_and_the_lock_resumes(tmp_path: Path) -> None:
    lab = lab_on_free_ports(tmp_path, "e2e-recovery")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ionpilot.cli", "up", "--config", str(lab), "--duration", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    output: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)

    threading.Thread(target=read, daemon=True).start()
    config = load_config(lab)
    endpoint = f"tcp://127.0.0.1:{config.processes['daemon'].command_port}"
    audit = tmp_path / "var" / "servo" / "audit.sqlite"
    try:
        with CommandClient(config.bus, endpoint) as client:

            def status() -> dict:
                try:
                    return client.call("daemon", "status", {}, timeout=5.0)
                except Exception:  # not up yet
                    return {}

            def locked_and_idle() -> bool:
                s = status()
                return (
                    s.get("state") == "locked"
                    and s.get("recovering") == ""
                    and (s.get("aux_locks") == {"cooling": "locked", "repump": "locked"})
                )

            assert wait_for(locked_and_idle, 90), "".join(output)
            fault = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ionpilot.cli",
                    "sim",
                    "--config",
                    str(lab),
                    "fault",
                    "ion_loss",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert fault.returncode == 0, fault.stdout + fault.stderr
            assert wait_for(lambda: status().get("recovering") == "ion_loss", 20), status()
            assert wait_for(locked_and_idle, 150), (status(), "".join(output[-30:]))
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
    finally:
        proc.terminate()
        proc.wait(timeout=60)
