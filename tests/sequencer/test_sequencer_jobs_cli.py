"""`ionpilot jobs submit|list|show|cancel|hold|resume|audit`: the job queue from the shell, against
a sequencer service (simulator backend) on the free loopback ports of a copy of the lab file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labprocs import lab_on_free_ports, wait_for  # type: ignore[import-not-found]

from ionpilot.access import as_principal
from ionpilot.bus.client import CommandClient
from ionpilot.cli import build_parser, main
from ionpilot.commands.jobs import (
    JobQueueLink,
    JobsError,
    duration,
    submit_and_wait,
    who_am_i,
)
from ionpilot.config import load_config
from ionpilot.sequencer import JobQueue, execute_job
from ionpilot.sequencer.service import SequencerService

V3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
X0 = V3 + "qubit[1] q;\nbit[1] c;\nx q[0];\nc[0] = measure q[0];\n"
LOCAL_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
UNIX_SECONDS = re.compile(r"\b1[6-9]\d{8}(\.\d+)?\b")  # what the human output must not show


@dataclasses.dataclass
class Queue:
    lab: Path
    program: Path
    client: CommandClient  # the daemon's view of the service
    service: SequencerService

    def jobs(self, *args: str) -> int:
        return main(["jobs", *args, "--config", str(self.lab)])

    def bus(self, name: str, **args: Any) -> Any:
        return self.client.call("sequencer", "call", {"name": name, **args})

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.client.call("sequencer", "get", {"name": "job", "id": job_id})
        return job


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    lab = lab_on_free_ports(tmp_path, "jobs-cli")
    config = load_config(lab)
    device = config.device
    port = config.processes["sequencer"].command_port
    service = SequencerService(
        JobQueue(tmp_path / "jobs.json"),
        device,
        lambda job: execute_job(job, device, ideal=True, seed=1),
        config.bus,
        f"tcp://127.0.0.1:{port}",
        backend="sim",
    ).start()
    program = tmp_path / "x0.qasm"
    program.write_text(X0)
    # the daemon's view, with the daemon's key: only the daemon holds in its name
    client = CommandClient(as_principal(config, "daemon"), service.endpoint, name="daemon")
    try:
        yield Queue(lab, program, client, service)
    finally:
        client.close()
        service.stop()


def test_jobs_from_the_shell_in_the_labs_words(queue, capsys):
    me = who_am_i()
    assert queue.jobs("hold", "--reason", "maintenance") == 0
    out = capsys.readouterr().out
    assert re.match(rf"user jobs held since {LOCAL_TIME} \(for \d+ ms\) by {me}: maintenance;", out)
    assert queue.jobs("submit", str(queue.program), "--shots", "20", "--priority", "5") == 0
    out = capsys.readouterr().out
    first = re.match(r"job ([0-9a-f]{12}) queued \(20 shots, priority 5\)", out)
    assert first is not None and "it waits until they resume" in out
    assert queue.jobs("submit", str(queue.program), "--shots", "10", "--in", "10 min") == 0
    out = capsys.readouterr().out
    second = re.match(r"job ([0-9a-f]{12}) queued \(10 shots, priority 0\)", out)
    assert second is not None and re.search(rf"due {LOCAL_TIME}", out)
    due = queue.job(second[1])["due_s"]
    assert due == pytest.approx(time.time() + 600, abs=5)

    assert queue.jobs("list") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.match(
        rf"queue on the sim backend: user jobs held since {LOCAL_TIME} \(for [\d.]+ m?s\) by "
        rf"{me}: maintenance; 2 queued$",
        lines[0],
    )
    assert lines[1].split() == [
        "ID", "KIND", "STATE", "PRIORITY", "SHOTS", "SUBMITTED", "BY", "DUE", "WAITED", "RAN"
    ]  # fmt: skip
    row1, row2 = lines[2].split(), lines[3].split()
    assert row1[:5] == [first[1], "user", "queued", "5", "20"] and row1[6:8] == [me, "on"]
    assert re.fullmatch(LOCAL_TIME, row1[5]) and row1[-1] == "-"
    assert row2[:5] == [second[1], "user", "queued", "0", "10"] and re.fullmatch(
        LOCAL_TIME, row2[7]
    )
    assert not UNIX_SECONDS.search(out)

    assert queue.jobs("cancel", second[1]) == 0
    assert (
        capsys.readouterr().out == f"job {second[1]} cancelled (it was queued; nothing of it ran)\n"
    )
    assert queue.jobs("cancel", second[1]) == 2
    assert capsys.readouterr().err == (
        f"error: bad_request: job {second[1]} is cancelled; only queued jobs can be cancelled\n"
    )
    assert queue.jobs("resume") == 0  # my own hold: no --force needed
    out = capsys.readouterr().out
    assert out.startswith("released: user jobs were held since ")
    assert re.search(rf"by {me}: maintenance\nuser jobs are served again; [01] queued\n$", out)
    wait_for(lambda: queue.job(first[1])["state"] == "done")

    assert queue.jobs("show", first[1]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job {first[1]}: done (user job)\n")
    assert re.search(rf"submitted  {LOCAL_TIME} by {me}, priority 5, 20 shots on sim", out)
    assert re.search(rf"started    {LOCAL_TIME} \(waited [\d.]+ m?s\)", out)
    assert re.search(rf"finished   {LOCAL_TIME} \(ran [\d.]+ m?s\)", out)
    assert "  1      20  p=1.0000" in out
    assert re.search(rf"{LOCAL_TIME}  submit    {me}  user priority=5", out)
    assert re.search(rf"{LOCAL_TIME}  done      sequencer  \([\d.]+ m?s\)", out)
    assert "program:" not in out and not UNIX_SECONDS.search(out)

    assert queue.jobs("audit") == 0
    actions = [line.split()[1:4] for line in capsys.readouterr().out.splitlines()]
    assert actions == [
        ["(queue)", "hold", me],
        [first[1], "submit", me],
        [second[1], "submit", me],
        [second[1], "cancel", me],
        ["(queue)", "resume", me],
        [first[1], "start", "sequencer"],
        [first[1], "done", "sequencer"],
    ]


def test_json_for_scripts_has_unix_and_local_times(queue, capsys):
    assert queue.jobs("submit", str(queue.program), "--shots", "7", "--wait", "--json") == 0
    job = json.loads(capsys.readouterr().out)
    assert job["state"] == "done" and job["result"]["counts"] == {"1": 7}
    assert isinstance(job["submitted_s"], float)
    assert re.fullmatch(LOCAL_TIME, job["submitted_local"])
    assert re.fullmatch(LOCAL_TIME, job["finished_local"])
    assert queue.jobs("list", "--json", "--state", "done") == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["held"] is False and listing["backend"] == "sim"
    assert listing["counts"] == {"done": 1}
    assert [j["id"] for j in listing["jobs"]] == [job["id"]]
    assert queue.jobs("list", "--json", "--state", "queued") == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == []
    assert queue.jobs("audit", "--job", job["id"], "--json") == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in records] == ["submit", "start", "done"]
    assert all(re.fullmatch(LOCAL_TIME, r["at_local"]) for r in records)


def test_the_daemons_hold_is_released_only_with_force(queue, capsys):
    queue.bus("hold", reason="recovery: ion_loss", client="daemon")
    assert queue.jobs("resume") == 2
    err = capsys.readouterr().err
    assert re.match(
        rf"error: user jobs are held since {LOCAL_TIME} \(for [\d.]+ m?s\) by daemon: "
        r"recovery: ion_loss; that is not your hold, and resuming now could run jobs during "
        r"it \(--force releases every hold\)$",
        err,
    )
    assert queue.client.call("sequencer", "status")["held"] is True
    assert queue.jobs("hold", "--reason", "laser alignment") == 0
    assert "note: user jobs were already held since " in capsys.readouterr().out
    assert queue.jobs("resume") == 0  # mine is released, the daemon's stays
    out = capsys.readouterr().out
    assert ": laser alignment\nuser jobs are still held since " in out
    assert out.endswith("by daemon: recovery: ion_loss\n")
    assert queue.jobs("resume", "--force") == 0
    assert queue.client.call("sequencer", "status")["held"] is False


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["submit", "X", "--priority", "500"], "bad_request: priority 500 outside -100..100"),
        (["submit", "X", "--in", "10"], "--in: '10' has no unit; write it with one, e.g. '10 s'"),
        (["submit", "X", "--in", "-5 s"], "--in '-5 s' is in the past"),
        (["submit", "X", "--at", "tomorrow"], "--at 'tomorrow' is not an ISO time"),
        (["submit", "X", "--at", "1970-01-01T00:00"], "bad_request: due_s 0"),
        (["submit", "X", "--shots", "0"], "--shots must be at least 1"),
        (["submit", "nowhere.qasm"], "cannot read nowhere.qasm: No such file or directory"),
        (["show", "abcdef123456"], "bad_request: unknown job 'abcdef123456'"),
        (["list", "--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_input_is_refused_with_exit_2_and_queues_nothing(queue, capsys, args, error):
    args = [str(queue.program) if a == "X" else a for a in args]
    assert queue.jobs(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {error}") and "Traceback" not in err
    assert queue.client.call("sequencer", "list")["jobs"] == []


def test_no_sequencer_listening_exits_1_at_once(tmp_path, capsys):
    lab = lab_on_free_ports(tmp_path, "nobody")
    started = time.monotonic()
    assert main(["jobs", "list", "--config", str(lab)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: nothing listens at tcp://127.0.0.1:")
    assert "`ionpilot up`" in err and time.monotonic() - started < 5


def test_ctrl_c_while_waiting_cancels_the_job(queue):
    queue.bus("hold", reason="recovery: ion_loss", client="daemon")
    config = load_config(queue.lab)
    link = JobQueueLink(config)
    said: list[str] = []

    def operator_presses_ctrl_c(text: str) -> None:
        said.append(text)
        if "waits" in text:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            submit_and_wait(link, {"qasm": X0, "shots": 5}, operator_presses_ctrl_c)
    finally:
        link.close()
    (job,) = queue.client.call("sequencer", "list")["jobs"]
    assert job["state"] == "cancelled"
    assert said[-1] == f"job {job['id']} cancelled before it ran"


def test_no_wait_on_a_held_queue_names_the_hold(queue):
    queue.bus("hold", reason="safe state: ion_loss retries exhausted", client="daemon")
    link = JobQueueLink(load_config(queue.lab))
    try:
        with pytest.raises(JobsError) as refused:
            submit_and_wait(link, {"qasm": X0}, lambda text: None, no_wait=True)
    finally:
        link.close()
    assert refused.value.code == 2
    assert "by daemon: safe state: ion_loss retries exhausted; nothing submitted" in str(
        refused.value
    )


def test_durations_read_like_an_operator_says_them():
    assert [duration(s) for s in (0.35, 4.21, 42.4, 185, 7800, 2 * 86400 + 3600)] == [
        "350 ms",
        "4.2 s",
        "42 s",
        "3 min 5 s",
        "2 h 10 min",
        "2 d 1 h",
    ]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_jobs_action_and_option_is_described():
    commands = _subparsers(build_parser())
    parsers = {"run-qasm": commands["run-qasm"]}
    parsers |= {f"jobs {n}": p for n, p in _subparsers(commands["jobs"]).items()}
    assert sorted(parsers) == [
        "jobs audit", "jobs cancel", "jobs hold", "jobs list", "jobs resume", "jobs show",
        "jobs submit", "run-qasm",
    ]  # fmt: skip
    for name, parser in parsers.items():
        assert parser.description, name
        for action in parser._actions:
            assert action.help, (name, action.dest)
