"""The sequencer service: the job queue served on the bus over loopback (free ports), jobs run by
its worker, hold/resume for recoveries, cancellation, the audit trail, and a restart that loses
nothing; plus `ionpilot sequencer-service` as a real process."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from labprocs import wait_for as shared_wait_for  # type: ignore[import-not-found]

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError
from ionpilot.bus.settings import BusSettings
from ionpilot.sequencer import JobQueue, clock_interrogation, execute_job
from ionpilot.sequencer.service import SequencerService
from ionpilot.sequencer.settings import DeviceSettings

ROOT = Path(__file__).resolve().parents[2]
V3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
BELL = V3 + "qubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n"
X0 = V3 + "qubit[1] q;\nbit[1] c;\nx q[0];\nc[0] = measure q[0];\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    return shared_wait_for(predicate, timeout)


@dataclasses.dataclass
class Running:
    service: SequencerService
    client: CommandClient
    path: Path

    def call(self, name: str, **args: Any) -> Any:
        return self.client.call("sequencer", "call", {"name": name, **args})

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.client.call("sequencer", "get", {"name": "job", "id": job_id})
        return job

    def finished(self, job_id: str) -> dict[str, Any]:
        return wait_for(lambda: (j := self.job(job_id))["state"] in ("done", "failed") and j)


BUS = BusSettings(publish_port=free_port(), subscribe_port=free_port())  # no hub: events go nowhere


def start_service(path: Path) -> Running:
    device = DeviceSettings()
    service = SequencerService(
        JobQueue(path),
        device,
        lambda job: execute_job(job, device, ideal=True, seed=1),
        BUS,
        "tcp://127.0.0.1:0",
        backend="sim",
    ).start()
    return Running(service, CommandClient(BUS, service.endpoint, name="tester"), path)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    run = start_service(tmp_path / "jobs.json")
    try:
        yield run
    finally:
        run.client.close()
        run.service.stop()


def test_submit_runs_and_returns_the_result(running):
    job_id = running.call("submit", qasm=BELL, shots=200, client="alice")["id"]
    job = running.finished(job_id)
    assert job["state"] == "done" and job["error"] is None
    assert job["submitter"] == "alice" and job["backend"] == "sim" and job["shots"] == 200
    assert job["result"]["probabilities"] == pytest.approx({"00": 0.5, "11": 0.5})
    assert sum(job["result"]["counts"].values()) == 200
    listing = running.client.call("sequencer", "list")
    assert [j["id"] for j in listing["jobs"]] == [job_id]
    assert "program" not in listing["jobs"][0] and "result" not in listing["jobs"][0]
    actions = [(a["action"], a["who"]) for a in listing["audit"]]
    assert actions == [("submit", "alice"), ("start", "sequencer"), ("done", "sequencer")]
    assert listing["audit"][-1]["duration_s"] >= 0


def test_a_bad_program_is_refused_at_submission(running):
    with pytest.raises(BusError) as refused:
        running.call("submit", qasm=V3 + "qubit q;\nfoo q;\n")
    assert refused.value.code == "bad_request"
    assert "line 4" in refused.value.message and "foo" in refused.value.message
    for args in ({"qasm": BELL, "shots": 0}, {"qasm": BELL, "shots": "many"}, {"shots": 5}):
        with pytest.raises(BusError) as refused:
            running.call("submit", **args)
        assert refused.value.code == "bad_request"
    assert running.client.call("sequencer", "list")["jobs"] == []


def test_compile_and_simulate_answer_at_once_and_queue_nothing(running):
    compiled = running.call("compile", qasm=BELL)
    assert compiled["report"]["two_qubit_count"] == 1
    channels = {e["channel"] for e in compiled["schedule"]["events"]}
    assert channels  # the schedule the console draws
    result = running.call("simulate", qasm=BELL, shots=400, ideal=True)
    assert set(result["counts"]) == {"00", "11"}
    assert sum(result["counts"].values()) == 400
    with pytest.raises(BusError) as refused:
        running.call("compile", qasm=V3 + "qubit q;\nfoo q;\n")
    assert refused.value.code == "bad_request" and "line 4" in refused.value.message
    with pytest.raises(BusError) as refused:
        running.call("simulate", qasm=BELL, shots=0)
    assert refused.value.code == "bad_request"
    assert running.client.call("sequencer", "list")["jobs"] == []


def test_hold_keeps_user_jobs_but_runs_clock_jobs(running):
    assert running.call("hold", reason="ion loss recovery", client="daemon") == {
        "held": True,
        "reason": "ion loss recovery",
    }
    user = running.call("submit", qasm=X0, shots=50, priority=9)["id"]
    schedule = clock_interrogation(DeviceSettings()).dumps()
    clock = running.call("submit", kind="clock", schedule=schedule, shots=20, client="daemon")["id"]
    assert running.finished(clock)["state"] == "done"
    assert running.job(user)["state"] == "queued"
    assert running.client.call("sequencer", "status")["held"] is True
    running.call("resume", client="daemon")
    done = running.finished(user)
    assert done["result"]["counts"] == {"1": 50}
    who = [(a["action"], a["who"]) for a in running.client.call("sequencer", "list")["audit"]]
    assert ("hold", "daemon") in who and ("resume", "daemon") in who


def test_cancel_a_queued_job(running):
    running.call("hold")
    job_id = running.call("submit", qasm=BELL, client="bob")["id"]
    assert running.call("cancel", id=job_id, client="bob")["state"] == "cancelled"
    with pytest.raises(BusError) as refused:
        running.call("cancel", id=job_id)
    assert refused.value.code == "bad_request" and "only queued jobs" in refused.value.message
    assert running.job(job_id)["state"] == "cancelled"


def test_priorities_decide_the_order(running):
    running.call("hold")
    low = running.call("submit", qasm=X0, shots=10, priority=0)["id"]
    high = running.call("submit", qasm=X0, shots=10, priority=5)["id"]
    running.call("resume")
    running.finished(low)
    running.finished(high)
    starts = [
        a["job_id"]
        for a in running.client.call("sequencer", "list")["audit"]
        if a["action"] == "start"
    ]
    assert starts == [high, low]


def test_due_times_are_honoured(running):
    due = time.time() + 3600
    later = running.call("submit", qasm=X0, shots=10, due_s=due)["id"]
    now = running.call("submit", qasm=X0, shots=10)["id"]
    running.finished(now)
    assert running.job(later)["state"] == "queued"
    assert running.job(later)["due_s"] == pytest.approx(due)


def test_unknown_requests_are_refused(running):
    with pytest.raises(BusError) as refused:
        running.call("explode")
    assert refused.value.code == "unknown_method"
    with pytest.raises(BusError) as refused:
        running.client.call("sequencer", "get", {"name": "job", "id": "nope"})
    assert refused.value.code == "bad_request" and "unknown job" in refused.value.message


def test_a_restart_loses_nothing(tmp_path):
    path = tmp_path / "jobs.json"
    first = start_service(path)
    try:
        first.call("hold", reason="recovery")
        ids = [first.call("submit", qasm=X0, shots=10, client="carol")["id"] for _ in range(3)]
        first.call("cancel", id=ids[2])
    finally:
        first.client.close()
        first.service.stop()
    second = start_service(path)
    try:
        listing = second.client.call("sequencer", "list")
        assert listing["held"] is True
        assert [(j["id"], j["state"]) for j in listing["jobs"]] == [
            (ids[0], "queued"),
            (ids[1], "queued"),
            (ids[2], "cancelled"),
        ]
        second.call("resume")
        assert second.finished(ids[0])["result"]["counts"] == {"1": 10}
        assert second.finished(ids[1])["state"] == "done"
    finally:
        second.client.close()
        second.service.stop()


def test_cli_sequencer_service_process(tmp_path):
    """`ionpilot sequencer-service` starts, serves on its configured port, stops on SIGTERM."""
    text = (ROOT / "configs" / "sim-lab.yaml").read_text()
    port = free_port()
    text = re.sub(r"sequencer: \{command_port: \d+\}", f"sequencer: {{command_port: {port}}}", text)
    text = re.sub(r"publish_port: \d+", f"publish_port: {free_port()}", text)
    text = re.sub(r"subscribe_port: \d+", f"subscribe_port: {free_port()}", text)
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(text)
    queue = tmp_path / "queue.json"
    cmd = [sys.executable, "-m", "ionpilot.cli", "sequencer-service", "--config", str(lab_file)]
    proc = subprocess.Popen(
        [*cmd, "--backend", "sim", "--queue", str(queue)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("ready sequencer: sim backend"), line + proc.stderr.read()
        with CommandClient(BUS, f"tcp://127.0.0.1:{port}") as client:
            job_id = client.call("sequencer", "call", {"name": "submit", "qasm": X0, "shots": 5})[
                "id"
            ]
            job = wait_for(
                lambda: (
                    (j := client.call("sequencer", "get", {"name": "job", "id": job_id}))["state"]
                    == "done"
                    and j
                )
            )
        assert sum(job["result"]["counts"].values()) == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert job_id in queue.read_text()


def test_cli_sequencer_service_refuses_a_bad_lab_file(tmp_path, capsys):
    from ionpilot.cli import main

    text = (ROOT / "configs" / "sim-lab.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(re.sub(r"\n  sequencer: \{command_port: \d+\}", "", text))
    assert main(["sequencer-service", "--config", str(bad), "--backend", "sim"]) == 2
    assert "error: the lab file has no process 'sequencer'" in capsys.readouterr().err


@pytest.mark.parametrize("due", [float("nan"), float("inf"), float("-inf"), 1e308, 0.0, -1.0])
def test_a_due_time_that_cannot_be_is_refused(running, due):
    """NaN, +inf and 1e308 were accepted and never ran; -inf and 0 jumped the queue."""
    with pytest.raises(BusError) as refused:
        running.call("submit", qasm=X0, shots=10, due_s=due)
    assert refused.value.code == "bad_request"
    message = refused.value.message
    assert message.startswith(f"due_s {due!r} is not a Unix time in seconds from 1 h ago")
    assert "366 days ahead" in message and "omit it to run when ready" in message
    assert running.client.call("sequencer", "list")["jobs"] == []


def test_a_clock_schedule_with_a_nan_time_unit_is_refused_at_submission(running):
    """It was queued and failed only when it ran."""
    doc = clock_interrogation(DeviceSettings()).to_json()
    schedule = json.dumps({**doc, "time_unit_s": float("nan")})
    with pytest.raises(BusError) as refused:
        running.call("submit", kind="clock", schedule=schedule, shots=10, client="daemon")
    assert refused.value.code == "bad_request"
    assert "schedule refused" in refused.value.message
    assert "time unit nan s is not the device's 1e-09 s" in refused.value.message
    doc["events"][-2]["phase_rad"] = float("nan")  # the probe pulse's phase
    with pytest.raises(BusError) as refused:
        running.call("submit", kind="clock", schedule=json.dumps(doc), client="daemon")
    assert "phase nan rad is not a finite number" in refused.value.message
    assert running.client.call("sequencer", "list", {"kind": "clock"})["jobs"] == []


def test_user_priorities_and_backends_are_bounded(running):
    for priority in (101, -101, 10**12):
        with pytest.raises(BusError) as refused:
            running.call("submit", qasm=X0, priority=priority)
        assert refused.value.code == "bad_request"
        assert refused.value.message == (
            f"priority {priority} outside -100..100 (user jobs; higher runs first)"
        )
    with pytest.raises(BusError) as refused:
        running.call("submit", qasm=X0, backend="trap")
    assert refused.value.message == (
        "this sequencer service runs jobs on the 'sim' backend, not 'trap'"
    )
    assert running.client.call("sequencer", "list")["jobs"] == []


def test_a_held_queue_says_why_since_when_and_refuses_if_asked(running):
    before = time.time()
    running.call("hold", reason="recovery: ion_loss", client="daemon")
    status = running.client.call("sequencer", "status")
    assert status["held"] is True and status["held_by"] == "daemon"
    assert status["hold_reason"] == "recovery: ion_loss"
    assert before <= status["held_since_s"] <= time.time()
    since = status["held_since_s"]
    running.call("hold", reason="safe state: retries exhausted", client="daemon")
    again = running.client.call("sequencer", "status")
    assert again["held_since_s"] == since  # still the same hold, with a new reason
    with pytest.raises(BusError) as refused:
        running.call("submit", qasm=X0, if_held="refuse", client="alice")
    assert refused.value.code == "busy"
    assert refused.value.message.startswith("user jobs are held (by daemon, for ")
    assert refused.value.message.endswith(": safe state: retries exhausted; nothing submitted")
    assert running.client.call("sequencer", "list")["jobs"] == []
    reply = running.call("submit", qasm=X0, shots=5, client="alice")  # waits in the queue
    assert reply["held"] is True and reply["held_since_s"] == since and reply["ahead"] == 0
    running.call("resume", client="daemon")
    assert running.finished(reply["id"])["state"] == "done"
    assert "audit" not in running.job(reply["id"])  # a scan of the trail only on request
    job = running.client.call("sequencer", "get", {"name": "job", "id": reply["id"], "audit": True})
    assert [(a["action"], a["who"]) for a in job["audit"]] == [
        ("submit", "alice"),
        ("start", "sequencer"),
        ("done", "sequencer"),
    ]
    status = running.client.call("sequencer", "status")
    assert status["held"] is False and status["held_since_s"] is None and status["held_by"] == ""
