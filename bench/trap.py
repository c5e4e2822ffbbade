"""Trap benchmark: how much of the wall time 1,000-shot Bell jobs spend playing shots on the
simulated trap at real-time pacing (the pulse controller replies when the world's clock has
reached the end of the shots it played), and where the rest goes.

Starts the whole lab (`ionpilot up`) on a copy of the lab file with every port moved to a free
one, a temporary data_dir, the bus unencrypted on loopback and the lab's five-ion chain, waits
for the clock lock, then measures three ways:

* shared: the clock servo locked and sharing the controller, user jobs streamed through the
  sequencer service's queue (submitted at once: users always wait), as a lab runs them. Over the span from the first
  job's start to the last one's end: the user duty (the Bell jobs' shot time / wall), the clock's
  share (its jobs' controller time / wall, beside the minimum the servo's time constant sets,
  `ClockShare.min_duty`), the controller's duty (clock and user / wall), and the user duty of
  the time the clock leaves. With the servo sharing, the users cannot have more than 1 − the
  clock's minimum share (0.65 with the default lab): the issue's own requirement for the clock.
* alone: the trap lent to the bench (`lend_laser laser=trap`: the lock holds over and plays no
  interrogation; the daemon's fluorescence checks still run, and are counted), the same jobs
  through the trap backend the service uses (`TrapBackend`, over the bus from this process),
  each step timed: compile (parse, native gates, schedule), the backend's own work (validate,
  translate, decode), the controller's `describe` (asked for the first job only: the backend
  keeps it; beside it, a fresh backend per job that asks every time), the `run` calls (upload,
  shots, readback) beyond the shots themselves. The target is judged here: the Bell jobs' shot
  time / wall with the controller to the user.
* direct while shared: the backend from this process beside the queue while the servo shares
  the controller, asking `describe` every job and keeping it: either request waits behind the
  servo's interrogation run in the driver host (what this bench's direct path measured before).

Printed beside the figures: the shot length below which the measured per-job overhead keeps the
duty cycle under the 0.8 target, the device's longest schedule, the machine's load average, and,
as the peer measured in the same run, the simulated world's own CPU time for the same 1,000 shots
on virtual time (no pacing, no bus): when it exceeds the shot time, the world cannot keep pace.

    .venv/bin/python bench/trap.py --json [--jobs 5] [--shared-jobs 20] [--shots 1000]

Target: duty cycle >= 0.8 (alone; shared, the users' share is at most 1 − the clock's minimum).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ionpilot.access import as_principal
from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError
from ionpilot.config import LabConfig, load_config
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.runner import compile_program, run_program
from ionpilot.sequencer.service import SequencerService
from ionpilot.sequencer.trap import BusPulserLink, TrapBackend, translate_schedule
from ionpilot.servo.interrogation import min_interrogation_rate_hz

ROOT = Path(__file__).resolve().parents[1]
SEQUENCER = SequencerService.PROCESS
BELL = ROOT / "tests/sequencer/qasm/bell_v2.qasm"
TARGET = 0.8
OWNER = "bench-trap"

sys.path.insert(0, str(ROOT / "tests" / "foundation"))
from labprocs import lab_on_free_ports  # type: ignore[import-not-found]  # noqa: E402


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (BusError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"bench/trap.py: {what} not ready within {timeout_s:g} s")


def _client(config: LabConfig, process: str) -> CommandClient:
    port = config.processes[process].command_port
    return CommandClient(config.bus, f"tcp://127.0.0.1:{port}", name="bench-trap")


def _cpu() -> float:
    return time.process_time()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


class TimedLink:
    """The backend's link to the controller over the bus, each call timed (wall)."""

    def __init__(self, link: BusPulserLink) -> None:
        self.link = link
        self.describe_s = self.run_s = 0.0
        self.describes = self.runs = 0

    def describe(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return self.link.describe()
        finally:
            self.describe_s += time.perf_counter() - t0
            self.describes += 1

    def run(self, shots: int, pulses: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return self.link.run(shots, pulses, timeout_s)
        finally:
            self.run_s += time.perf_counter() - t0
            self.runs += 1

    def reset(self) -> None:
        self.describe_s = self.run_s = 0.0
        self.describes = self.runs = 0


def shot_length_s(config: LabConfig, text: str) -> float:
    """One shot of the Bell program on the controller (its translated timeline)."""
    device = config.device
    program = compile_program(parse_qasm(text, name="bell", device=device), device)
    return translate_schedule(program.schedule, device, chain_check=True).shot_s


def backend_jobs(
    config: LabConfig, text: str, shots: int, jobs: int, *, keep_description: bool = True
) -> list[dict[str, Any]]:
    """Bell jobs through `TrapBackend` over the bus, each step timed. `keep_description=False`:
    a fresh backend per job, which asks the controller's `describe` every time (as it did)."""
    device = config.device
    instrument = config.instruments[device.pulse_controller]
    port = config.processes[instrument.host].command_port
    # the pulser's `run` is the sequencer's alone: this path stands in for the service, as it
    # (its key under data_dir/keys on a secured bus; its declared name on this unsecured one)
    bus = as_principal(config, SEQUENCER)
    where = f"tcp://127.0.0.1:{port}"
    link = BusPulserLink(bus, where, device.pulse_controller, client=SEQUENCER)
    timed = TimedLink(link)
    backend = TrapBackend(device, timed)
    shot_s = shot_length_s(config, text)
    out: list[dict[str, Any]] = []
    try:
        for _ in range(jobs):
            if not keep_description:
                backend = TrapBackend(device, timed)
            timed.reset()
            t0, c0 = time.perf_counter(), _cpu()
            program = compile_program(parse_qasm(text, name="bell", device=device), device)
            t1, c1 = time.perf_counter(), _cpu()
            result = run_program(program, backend, device, shots=shots)
            t2, c2 = time.perf_counter(), _cpu()
            wall, shot_time = t2 - t0, shots * shot_s
            counts = result["counts"]
            out.append(
                {
                    "shot_s": shot_s,
                    "shot_time_s": shot_time,
                    "wall_s": wall,
                    "duty_cycle": shot_time / wall,
                    "overhead_s": wall - shot_time,
                    "compile_s": t1 - t0,
                    "compile_cpu_s": c1 - c0,
                    "describe_s": timed.describe_s,
                    "describes": timed.describes,
                    "run_calls": timed.runs,
                    "run_wall_s": timed.run_s,
                    "upload_play_readback_beyond_shots_s": timed.run_s - shot_time,
                    # validate, translate, decode and the chain check (wall, this process's CPU)
                    "backend_own_s": (t2 - t1) - timed.describe_s - timed.run_s,
                    "backend_cpu_s": c2 - c1,
                    "bell_fraction": (counts.get("00", 0) + counts.get("11", 0)) / shots,
                }
            )
    finally:
        link.close()
    return out


def shared_stream(config: LabConfig, text: str, shots: int, jobs: int) -> dict[str, Any]:
    """`jobs` Bell jobs submitted at once to the sequencer service (users always waiting) while
    the clock servo shares the controller; the span from the first start to the last end."""
    client = _client(config, "sequencer")
    try:
        ids = set()
        for _ in range(jobs):
            args = {"name": "submit", "qasm": text, "shots": shots, "client": OWNER}
            ids.add(client.call("sequencer", "call", args)["id"])
        deadline = time.monotonic() + 60 + 10 * jobs
        while True:
            listing = client.call("sequencer", "list", {"kind": "user", "limit": 1000})
            mine = [j for j in listing["jobs"] if j["id"] in ids]
            if len(mine) == jobs and all(j["state"] in ("done", "failed") for j in mine):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench/trap.py: the shared jobs did not finish: {mine}")
            time.sleep(0.2)
        failed = [j for j in mine if j["state"] != "done"]
        if failed:
            raise SystemExit(f"bench/trap.py: job {failed[0]['id']} failed: {failed[0]['error']}")
        clock = client.call("sequencer", "list", {"kind": "clock", "state": "done", "limit": 1000})
        status = client.call("sequencer", "status", {})
    finally:
        client.close()
    start = min(j["started_s"] for j in mine)
    end = max(j["finished_s"] for j in mine)
    span = end - start
    clock_s = sum(
        max(0.0, min(j["finished_s"], end) - max(j["started_s"], start))
        for j in clock["jobs"]
        if j["started_s"] is not None and j["finished_s"] is not None
    )
    clock_jobs = sum(1 for j in clock["jobs"] if start <= (j["started_s"] or 0.0) < end)
    # the interrogations' probes (runs of more than one shot; a fluorescence check is one)
    probes = sum(
        int(j["shots"])
        for j in clock["jobs"]
        if j["started_s"] is not None and start <= j["started_s"] < end and j["shots"] > 1
    )
    lock = config.servo.clock_lock
    shot_s = shot_length_s(config, text)
    user_s = jobs * shots * shot_s
    min_share = float(status["clock"]["min_duty"])
    ran = [j["finished_s"] - j["started_s"] for j in mine]
    # the servo's own time between two of its jobs: one finished, its next one submitted
    done = sorted(
        (j for j in clock["jobs"] if j["finished_s"] is not None and start <= j["submitted_s"]),
        key=lambda j: j["submitted_s"],
    )
    gaps = sorted(
        b["submitted_s"] - a["finished_s"]
        for a, b in itertools.pairwise(done)
        if start <= a["finished_s"] <= b["submitted_s"] <= end
    ) or [0.0]
    return {
        "jobs": jobs,
        "span_s": span,
        "user_duty": user_s / span,
        "user_max_share": 1 - min_share,
        "clock_share": clock_s / span,
        "clock_min_share": min_share,
        "controller_duty": (user_s + clock_s) / span,
        "user_duty_of_time_left_by_clock": user_s / (span - clock_s),
        "clock_jobs_in_span": clock_jobs,
        "interrogations_per_s": probes / lock.probes_per_side / span,
        "min_interrogations_per_s": min_interrogation_rate_hz(lock),
        "controller_idle_share": 1 - (sum(ran) + clock_s) / span,
        "servo_gaps_s": {
            "count": len(gaps),
            "median": _median(gaps),
            "p90": gaps[int(0.9 * (len(gaps) - 1))],
            "max": gaps[-1],
            "total": sum(gaps),
        },
        "queue_job_ran_s": _median(ran),
        "queue_job_overhead_s": _median(ran) - shots * shot_s,
    }


def lend_trap(config: LabConfig, lend: bool) -> None:
    """The trap lent to the bench (`lend_laser laser=trap`: the lock holds over and plays no
    interrogation, the recovery starts no ion-loss playbook), or given back (the chain counted).
    Not `laser=clock`: the recovery resumes a lock held over for a lent clock laser after its
    lab-error grace (~2 s), and the interrogations came back in the middle of the arm."""
    daemon = _client(config, "daemon")
    try:
        if lend:
            args = {"name": "lend_laser", "laser": "trap", "owner": OWNER, "lease_s": 600}
            daemon.call("daemon", "call", args, timeout=5)
            wait_for(
                "the lock's hold-over",
                lambda: daemon.call("daemon", "status", {}, timeout=2)["state"] == "holdover",
                30,
            )
        else:
            args = {"name": "return_laser", "laser": "trap", "owner": OWNER}
            daemon.call("daemon", "call", args, timeout=5)
    finally:
        daemon.close()


def clock_jobs_since(config: LabConfig, since_unix_s: float) -> dict[str, Any]:
    """The clock jobs (the daemon's fluorescence checks, while the trap is lent) started since
    `since_unix_s`: how many, their shots; their wall includes waiting in the driver host behind
    the bench's own runs, so it is not controller time."""
    client = _client(config, "sequencer")
    try:
        listing = client.call("sequencer", "list", {"kind": "clock", "limit": 1000})
    finally:
        client.close()
    mine = [
        j for j in listing["jobs"] if j["started_s"] is not None and j["started_s"] >= since_unix_s
    ]
    return {"clock_jobs": len(mine), "shots": sum(int(j["shots"]) for j in mine)}


def world_peer(config: LabConfig, text: str, shots: int) -> dict[str, float]:
    """The simulated world playing the same shots in this process on virtual time: its CPU."""
    from dataclasses import replace

    from ionpilot.sim.instruments.ionpilot_pulser import Pulser
    from ionpilot.sim.world import World

    device = config.device
    program = compile_program(parse_qasm(text, name="bell", device=device), device)
    pulses = translate_schedule(program.schedule, device, chain_check=True).pulses
    world = World(replace(config.sim))
    pulser = Pulser(world, "pulser")
    request = json.dumps({"id": 1, "op": "run", "shots": shots, "schedule": pulses})
    c0 = _cpu()
    reply = pulser.handle(request)
    cpu = _cpu() - c0
    assert reply is not None and b'"ok":true' in reply, reply[:200] if reply else reply
    return {"world_cpu_s": cpu, "world_cpu_per_shot_s": cpu / shots}


def summarise(jobs: list[dict[str, Any]], shots: int) -> dict[str, Any]:
    """Medians over the jobs, the overhead broken down, and the shot length the target needs."""
    med = {k: _median([float(j[k]) for j in jobs]) for k in jobs[0]}
    overhead = med["overhead_s"]
    return {
        "duty_cycle": med["duty_cycle"],
        "duty_cycle_per_job": [round(j["duty_cycle"], 4) for j in jobs],
        "met": med["duty_cycle"] >= TARGET,
        "shot_s": med["shot_s"],
        "shot_time_s": med["shot_time_s"],
        "job_wall_s": med["wall_s"],
        "per_job_overhead_s": {
            "total": overhead,
            "compile": med["compile_s"],
            "describe": med["describe_s"],
            "describe_first_job": jobs[0]["describe_s"],
            "backend_validate_translate_decode": med["backend_own_s"],
            "upload_play_readback_beyond_shots": med["upload_play_readback_beyond_shots_s"],
        },
        "describes_after_the_first_job": sum(j["describes"] for j in jobs[1:]),
        "run_calls_per_job": jobs[0]["run_calls"],
        "bell_fraction_min": min(j["bell_fraction"] for j in jobs),
        # the shortest shot for which this per-job overhead still allows the target duty cycle
        "min_shot_s_for_target": TARGET / (1 - TARGET) * max(overhead, 0.0) / shots,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--jobs", type=int, default=5, help="jobs per measurement (default 5)")
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument(
        "--shared-jobs", type=int, default=20, help="jobs streamed with the servo (default 20)"
    )
    parser.add_argument("--ions", type=int, default=2, help="at least this many ions (default 2)")
    parser.add_argument("--config", default=str(ROOT / "configs/sim-lab.yaml"))
    args = parser.parse_args()
    if args.jobs < 2 or args.shared_jobs < 2 or args.shots < 1 or args.ions < 2:
        parser.error("--jobs and --shared-jobs must be >= 2, --shots >= 1, --ions >= 2")
    text = BELL.read_text()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-trap-") as tmp:
        base = load_config(args.config)
        ions = max(args.ions, base.sim.n_ions)
        lab = lab_on_free_ports(
            Path(tmp),
            "bench-trap",
            [f"sim: {{n_ions: {ions}}}"],
            secured=False,
            base=Path(args.config),
        )
        config = load_config(lab)
        log = open(Path(tmp) / "up.log", "w")  # noqa: SIM115 (closed below)
        up = subprocess.Popen(
            [sys.executable, "-m", "ionpilot.cli", "up", "--config", str(lab), "--duration", "900"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            sequencer = _client(config, "sequencer")
            daemon = _client(config, "daemon")
            t0 = time.monotonic()
            wait_for("sequencer", lambda: sequencer.call("sequencer", "status", {}, timeout=2), 120)
            wait_for(
                "the clock lock",
                lambda: daemon.call("daemon", "status", {}, timeout=2).get("state") == "locked",
                180,
            )
            started_s = time.monotonic() - t0
            shared = shared_stream(config, text, args.shots, args.shared_jobs)
            per_job = backend_jobs(config, text, args.shots, args.jobs, keep_description=False)
            kept_shared = backend_jobs(config, text, args.shots, args.jobs)
            lock_shared = daemon.call("daemon", "status", {}, timeout=5).get("state")
            lend_trap(config, True)
            try:
                alone_from = time.time()
                alone = backend_jobs(config, text, args.shots, args.jobs)
                alone_asking = backend_jobs(
                    config, text, args.shots, args.jobs, keep_description=False
                )
                alone_clock = clock_jobs_since(config, alone_from)
            finally:
                lend_trap(config, False)
            final = daemon.call("daemon", "status", {}, timeout=5)
            sequencer.close()
            daemon.close()
        finally:
            os.killpg(up.pid, signal.SIGINT)  # our own child's group: the lab it started
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
            log.close()
    alone_summary = summarise(alone, args.shots)
    out: dict[str, Any] = {
        # the issue's figure: the Bell jobs' shot time / wall, the controller to the user
        "duty_cycle": alone_summary["duty_cycle"],
        "met": alone_summary["met"],
        "duty_cycle_configuration": "alone: the trap lent to the bench, no clock interrogation",
        # the same with the clock servo sharing: at most 1 - the clock's minimum share
        "user_duty_shared_with_the_clock": shared["user_duty"],
        "clock_share": shared["clock_share"],
        "clock_min_share": shared["clock_min_share"],
        "controller_duty_shared": shared["controller_duty"],
        "interrogations_per_s_shared": shared["interrogations_per_s"],
        "min_interrogations_per_s": shared["min_interrogations_per_s"],
        "target_duty_cycle": TARGET,
        "alone": {
            **alone_summary,
            "describe_every_job": summarise(alone_asking, args.shots),
            "clock_jobs_meanwhile": alone_clock,
        },
        "shared": shared,
        # the backend in this process, beside the queue, while the servo shares the controller:
        # each request waits behind the servo's run in the driver host, a `describe` as much as
        # a `run` (what this bench's direct path measured as 0.60-0.75 before)
        "direct_while_shared": {
            "describe_every_job": summarise(per_job, args.shots),
            "kept": summarise(kept_shared, args.shots),
        },
        "shot_duration_limit": {
            "min_shot_s_for_target": alone_summary["min_shot_s_for_target"],
            "max_schedule_duration_s": config.device.max_schedule_duration,
        },
        "peer_world_on_virtual_time": world_peer(config, text, args.shots),
        "lab": {
            "ions": ions,
            "shots": args.shots,
            "jobs": args.jobs,
            "shared_jobs": args.shared_jobs,
            "ready_after_s": started_s,
            "lock_state_after_the_shared_runs": lock_shared,
            "lock_state_as_the_trap_came_back": final.get("state"),
            "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
            "cpus": os.cpu_count(),
        },
        "alone_jobs": alone,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        a, sh = out["alone"], shared
        asked = out["direct_while_shared"]
        print(
            f"alone (the trap lent to the bench): duty cycle {a['duty_cycle']:.3f} median (target {TARGET}),"
            f" shot time {a['shot_time_s']:.3f} s, overhead {a['per_job_overhead_s']['total']:.3f}"
            f" s/job\nshared with the clock servo: user duty {sh['user_duty']:.3f} (at most "
            f"{sh['user_max_share']:.3f}), clock share {sh['clock_share']:.3f} (minimum "
            f"{sh['clock_min_share']:.3f}), controller duty {sh['controller_duty']:.3f}, user "
            f"duty of the time the clock leaves {sh['user_duty_of_time_left_by_clock']:.3f}, "
            f"interrogations {sh['interrogations_per_s']:.3f}/s (min "
            f"{sh['min_interrogations_per_s']:.3f}/s)\n"
            f"direct beside the queue while shared: duty "
            f"{asked['describe_every_job']['duty_cycle']:.3f} (describe every job), "
            f"kept: {asked['kept']['duty_cycle']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
