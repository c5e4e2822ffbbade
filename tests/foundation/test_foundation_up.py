"""End to end with real processes: `ionpilot up` brings the simulated lab to `locked`; a daemon
killed with SIGKILL is restarted by the supervisor and resumes from its persisted state without a
line search; so is the driver host, and the lock carries on through it; `up` stopped then
(SIGTERM) exits 0 with its summary and leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from labprocs import (
    UpRun,
    alive,
    command_client,
    daemon_status,
    lab_on_free_ports,
    locked_and_idle,
)

from ionpilot.config import load_config


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_up_locks_survives_daemon_kill_and_leaves_nothing(tmp_path: Path) -> None:
    lab = lab_on_free_ports(tmp_path, "e2e", ["servo: {clock_lock: {persist_period: 1 s}}"])
    summary_path = tmp_path / "summary.json"
    with UpRun(lab, 150, tmp_path, "--summary-json", str(summary_path), "--quiet") as up:
        state_file = tmp_path / "var" / "servo" / "clock_lock.json"

        def locked_state_saved() -> bool:
            if not state_file.exists():
                return False
            try:
                return json.loads(state_file.read_text()).get("state") == "locked"
            except ValueError:
                return False

        deadline = time.monotonic() + 50
        while time.monotonic() < deadline and not locked_state_saved():
            time.sleep(0.1)
        assert locked_state_saved(), up.text()
        config = load_config(lab)
        with command_client(config, "daemon") as client:

            def aux_locked() -> bool:
                status = client.call("daemon", "status", {}, timeout=5.0)
                return status["aux_locks"] == {"cooling": "locked", "repump": "locked"}

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not aux_locked():
                time.sleep(0.2)
            status = client.call("daemon", "status", {}, timeout=5.0)
        assert status["state"] == "locked", status
        assert status["aux_locks"] == {"cooling": "locked", "repump": "locked"}, status
        with command_client(config, "sequencer") as sequencer:  # every pulse through its queue
            clock_jobs = sequencer.call("sequencer", "list", {"kind": "clock"}, timeout=5.0)
            queue = sequencer.call("sequencer", "status", {}, timeout=5.0)
        assert len(clock_jobs["jobs"]) >= 20, clock_jobs
        assert {j["submitter"] for j in clock_jobs["jobs"]} == {"daemon"}, clock_jobs
        assert queue["clock"]["lock"]["state"] == "locked", queue
        assert "daemon.lock" not in queue["held_by"], queue  # locked: user jobs run
        first_daemon = up.pids["daemon"][0]
        os.kill(first_daemon, signal.SIGKILL)
        with command_client(config, "daemon") as client:

            def restarted_and_locked() -> bool:
                if len(up.pids.get("daemon", [])) < 2:
                    return False
                reply = client.request("daemon", "status", {}, timeout=2.0)
                return (
                    reply.ok and isinstance(reply.value, dict) and reply.value["state"] == "locked"
                )

            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and not restarted_and_locked():
                time.sleep(0.2)
            assert restarted_and_locked(), up.text()
        # now the driver host dies: the supervisor restarts it and the lock carries on (both
        # laser locks too, through the new host); then `up` is stopped as an operator would
        os.kill(up.pids["drivers"][0], signal.SIGKILL)
        with command_client(config, "daemon") as client:
            assert up.wait_until(lambda: len(up.pids["drivers"]) >= 2, 30, 0.1), up.text()
            restarted_at = int(client.call("daemon", "status", {}, timeout=5.0)["updates"])

            def locked_through_the_new_host() -> bool:
                # each clock correction interrogates the ion through the driver host: three
                # after the restart, locked and idle, say the lock carries on through it
                status = daemon_status(client)
                return locked_and_idle(status) and status["updates"] >= restarted_at + 3

            assert up.wait_until(locked_through_the_new_host, 60, 0.2), up.text()
        code = up.stop()
    text = up.text()
    assert code == 0, text
    summary = json.loads(summary_path.read_text())
    assert summary["time_to_lock_s"] is not None and summary["time_to_lock_s"] < 60, summary
    assert summary["processes"]["daemon"]["restarts"] == 1, text
    assert summary["processes"]["drivers"]["restarts"] == 1, text
    assert len(up.pids["drivers"]) == 2
    states = [entry["state"] for entry in summary["state_history"]]
    assert states.count("acquiring") == 1, states  # the restarted daemon did not search again
    assert summary["final_state"] == "locked", summary
    # no bus.security in the lab file: secured with the lab's own keys (issue 19)
    assert summary["bus_secured"] is True and summary["hub_refused"] == {}, summary
    keys = tmp_path / "var" / "keys"
    assert (keys / "drivers.key_secret").stat().st_mode & 0o077 == 0
    assert keys.stat().st_mode & 0o077 == 0
    assert len(up.pids["daemon"]) == 2
    for name, numbers in up.pids.items():
        for pid in numbers:
            assert not alive(pid), f"{name} pid {pid} left behind"
