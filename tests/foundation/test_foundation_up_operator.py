"""`ionpilot up` as an operator meets it: a healthy lab raises no alarm (the driver host's
heartbeat is not cried stale), a second `up` on the same ports is refused at once naming the
port and its owner, and the status is one line in the lab's words."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from labprocs import UpRun, lab_on_free_ports

from ionpilot.cli import main
from ionpilot.commands.up_status import LabView, StatusDisplay, status_line


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_healthy_lab_raises_no_alarm_and_a_second_up_is_refused_at_once(
    tmp_path: Path,
) -> None:
    lab = lab_on_free_ports(tmp_path, "healthy")
    summary_path = tmp_path / "summary.json"
    with UpRun(lab, 45, tmp_path, "--summary-json", str(summary_path)) as up:
        assert up.wait_until(lambda: "[daemon] started" in up.text(), 60, 0.2), up.text()  # last
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "ionpilot.cli", "up", "--config", str(lab), "--duration", "5"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=tmp_path,
        )
        refused_in = time.monotonic() - started
        code = up.wait(120)
    text = up.text()
    assert second.returncode == 2, second.stderr
    assert refused_in < 5.0, refused_in
    (line,) = second.stderr.splitlines()
    assert line.startswith("error: port ") and "(bus.publish_port) is taken by pid " in line
    assert "ionpilot hub" in line and "Traceback" not in second.stdout + second.stderr
    assert code == 0, text
    summary = json.loads(summary_path.read_text())
    assert summary["final_state"] == "locked", summary
    assert summary["health_signals_seen"] >= 5, summary
    assert summary["alarms_raised"] == 0, summary["alarms"]
    assert "Traceback" not in text
    # plain lines when not a terminal, in the lab's words; the summary on its own last line
    status = [s for s in text.splitlines() if s.startswith("up ")]
    assert status and "| clock locked, " in status[-1] and "| no alarms |" in status[-1], text
    assert json.loads(text.strip().splitlines()[-1])["alarms_raised"] == 0


def test_up_refuses_a_duration_that_is_not_above_zero(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("-5", "0", "nan", "soon"):
        with pytest.raises(SystemExit) as done:
            main(["up", "--duration", bad])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert "argument --duration" in err and "Traceback" not in err


def test_status_line_counts_alarms_and_says_the_last_event() -> None:
    view = LabView()
    view.on_health("aggregate", {"severity": "OK", "unacknowledged": ""})
    view.on_health("servo.drivers.heartbeat", {"severity": "OK", "reason": "within limits"})
    processes: dict[str, dict[str, Any]] = {
        "hub": {"state": "running", "restarts": 0},
        "daemon": {"state": "running"},
    }
    line = status_line(
        125.0, lock_state="locked", corrections=47, view=view, processes=processes, now=0.0
    )
    assert line == (
        "up 2 min 05 s | clock locked, 47 corrections | health OK | no alarms | "
        "2/2 processes running"
    )
    view.on_health("fluorescence", {"severity": "MAJOR", "reason": "below LOLO 3000"})
    view.on_health("fluorescence", {"severity": "INVALID", "reason": "stale"})
    view.on_health("fluorescence", {"severity": "OK", "reason": "within limits"})
    view.on_health("fluorescence", {"severity": "MINOR", "reason": "below LOW 3300"})
    view.on_event(10.0, "recovery_step", "reload_ion: oven on")
    line = status_line(
        3700.0, lock_state="holdover", corrections=47, view=view, processes=processes, now=22.0
    )
    assert "| 1 alarm: fluorescence MINOR (below LOW 3300) |" in line
    assert line.startswith("up 1 h 01 min | clock holdover")
    assert line.endswith("last event 12 s ago: recovery step: reload_ion: oven on")
    summary = view.summary()
    assert summary["alarms_raised"] == 2
    assert summary["alarms"]["fluorescence"] == {
        "times": 2,
        "worst": "INVALID",
        "first_reason": "below LOLO 3000",
    }


def test_status_display_rewrites_one_line_on_a_terminal_and_prints_lines_otherwise() -> None:
    tty = io.StringIO()
    display = StatusDisplay(tty, tty=True)
    display.status("up 1 s", now=0.0)
    display.status("up 2 s", now=1.0)
    display.line("[daemon] restarted")
    display.status("up 3 s", now=2.0)
    display.finish()
    assert tty.getvalue() == (
        "\rup 1 s\x1b[K\rup 2 s\x1b[K\r\x1b[K[daemon] restarted\n\rup 3 s\x1b[K\n"
    )
    plain = io.StringIO()
    display = StatusDisplay(plain, tty=False)
    assert display.due(0.0) and display.every_s == 10.0
    display.status("up 1 s", now=0.0)
    assert not display.due(5.0)
    display.finish()
    assert plain.getvalue() == "up 1 s\n"
