"""Trap benchmark: how much of a job's wall time the simulated trap spends playing shots.

Starts the whole lab (`ionpilot up`, the simulated lab in real time: the pulse controller replies
when the world's clock has reached the end of the shots it played) on a copy of the lab file
with every port moved to a free one, a temporary data_dir, the bus unencrypted on loopback and
at least two ions (`sim: n_ions`), then runs 1,000-shot Bell jobs two ways:

* direct: each step of the trap backend timed in this process: compile (parse + native gates +
  schedule), validate, translate, the controller's `describe`, the `run` calls over the bus
  (upload, shots, readback; split into calls of at most 2 s of shots as the backend does) and
  decoding the counts;
* queue: the same program as user jobs through the sequencer service (`submit`, then the job's
  own start and finish times);
* direct again, asking the controller's `describe` for the first job only (what the backend
  would save by keeping the controller's limits between jobs);
* a probe of the pulse controller's availability: a `describe` (no shots) every 0.13 s for 5 s;
  one that waits is queued behind a run of the clock servo's interrogations, which share the
  controller with user jobs (the daemon's `pause` does not free it: the lock resumes itself).

duty cycle = shot time (shots x the schedule's shot length) / wall time; the overhead is the
rest. Printed beside it: the shot length below which the measured per-job overhead keeps the
duty cycle under the 0.8 target, the device's longest schedule, and, as the peer measured in the
same run, the simulated world's own CPU time for the same 1,000 shots on virtual time (no
pacing, no bus): when it exceeds the shot time, the world cannot keep real-time pace.

    .venv/bin/python bench/trap.py --json [--jobs 5] [--shots 1000] [--ions 2]

Target: duty cycle >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
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
from ionpilot.drivers.hardware import MODELS
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.runner import compile_program
from ionpilot.sequencer.schedule import validate_schedule
from ionpilot.sequencer.service import SequencerService
from ionpilot.sequencer.trap import BusPulserLink, decode_counts, translate_schedule

ROOT = Path(__file__).resolve().parents[1]
SEQUENCER = SequencerService.PROCESS
BELL = ROOT / "tests/sequencer/qasm/bell_v2.qasm"
TARGET = 0.8
MAX_CALL_S = 2.0  # the trap backend's longest call (TrapBackend.max_call_s)
ADDRESS_FORMS = {
    "visa-socket": "TCPIP0::127.0.0.1::{}::SOCKET",
    "telnet": "TCPIP0::127.0.0.1::{}::SOCKET",
    "serial-socket": "socket://127.0.0.1:{}",
    "xmlrpc": "http://127.0.0.1:{}/RPC2",
    "tcp-json": "tcp://127.0.0.1:{}",
}


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def write_lab(base: Path, tmp: Path, ions: int) -> Path:
    """`base` with every port moved to a free one, data in `tmp`, `ions` ions, no CURVE."""
    config = load_config(base)
    ports = iter(free_ports(2 + len(config.processes) + len(config.instruments)))
    lines = [
        f"include: {base.resolve()}",
        f"lab: {{name: bench-trap, data_dir: {tmp / 'var'}}}",
        f"bus: {{publish_port: {next(ports)}, subscribe_port: {next(ports)}, "
        "security: {curve: false}}",
        f"sim: {{n_ions: {ions}}}",
        "processes:",
        *(f"  {p}: {{command_port: {next(ports)}}}" for p in config.processes),
        "instruments:",
    ]
    for name, inst in config.instruments.items():
        address = ADDRESS_FORMS[MODELS[inst.model].transport].format(next(ports))
        lines.append(f"  {name}: {{address: '{address}'}}")
    path = tmp / "lab.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


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


def direct_jobs(
    config: LabConfig, text: str, shots: int, jobs: int, *, describe_once: bool = False
) -> list[dict[str, Any]]:
    """The trap backend's steps, each timed (wall; compile also CPU). `describe_once`: ask the
    controller's limits for the first job only (what the backend would save by keeping them)."""
    device = config.device
    instrument = config.instruments[device.pulse_controller]
    port = config.processes[instrument.host].command_port
    # the pulser's `run` is the sequencer's alone: this path stands in for the service, as it
    # (its key under data_dir/keys on a secured bus; its declared name on this unsecured one)
    bus = as_principal(config, SEQUENCER)
    where = f"tcp://127.0.0.1:{port}"
    link = BusPulserLink(bus, where, device.pulse_controller, client=SEQUENCER)
    out: list[dict[str, Any]] = []
    try:
        for _ in range(jobs):
            t0, c0 = time.perf_counter(), _cpu()
            program = compile_program(parse_qasm(text, name="bell", device=device), device)
            t1, c1 = time.perf_counter(), _cpu()
            validate_schedule(program.schedule, device)
            t2 = time.perf_counter()
            if not describe_once or not out:
                info = link.describe()
            t3 = time.perf_counter()
            dds = info.get("limits", {}).get("dds_frequency_hz", (1e6, 400e6))
            pulser = translate_schedule(program.schedule, device, (float(dds[0]), float(dds[1])))
            t4 = time.perf_counter()
            per_call = max(1, int(MAX_CALL_S / pulser.shot_s))
            done, run_s, decode_s, calls = 0, 0.0, 0.0, 0
            while done < shots:
                batch = min(per_call, shots - done)
                r0 = time.perf_counter()
                reply = link.run(batch, pulser.pulses, batch * pulser.shot_s + 30.0)
                r1 = time.perf_counter()
                decode_counts(pulser, reply, batch, device.detection_threshold)
                decode_s += time.perf_counter() - r1
                run_s += r1 - r0
                done += batch
                calls += 1
            wall = time.perf_counter() - t0
            shot_time = shots * pulser.shot_s
            out.append(
                {
                    "shot_s": pulser.shot_s,
                    "shot_time_s": shot_time,
                    "wall_s": wall,
                    "duty_cycle": shot_time / wall,
                    "overhead_s": wall - shot_time,
                    "compile_s": t1 - t0,
                    "compile_cpu_s": c1 - c0,
                    "validate_s": t2 - t1,
                    "describe_s": t3 - t2,
                    "translate_s": t4 - t3,
                    "run_calls": calls,
                    "run_wall_s": run_s,
                    "upload_play_readback_beyond_shots_s": run_s - shot_time,
                    "decode_s": decode_s,
                }
            )
    finally:
        link.close()
    return out


def queue_jobs(config: LabConfig, text: str, shots: int, jobs: int) -> list[dict[str, Any]]:
    """The same program as user jobs through the sequencer service, one after the other."""
    client = _client(config, "sequencer")
    out: list[dict[str, Any]] = []
    try:
        for _ in range(jobs):
            sent = time.time()
            reply = client.call(
                "sequencer",
                "call",
                {"name": "submit", "qasm": text, "shots": shots, "client": "bench-trap"},
            )
            job_id = reply["id"]
            while True:
                job = client.call("sequencer", "get", {"name": "job", "id": job_id})
                if job["state"] in ("done", "failed", "cancelled"):
                    break
                time.sleep(0.05)
            got = time.time()
            if job["state"] != "done":
                raise SystemExit(f"bench/trap.py: job {job_id} {job['state']}: {job['error']}")
            ran = job["finished_s"] - job["started_s"]
            out.append(
                {
                    "ran_s": ran,
                    "waited_s": job["started_s"] - job["submitted_s"],
                    "round_trip_s": got - sent,
                }
            )
    finally:
        client.close()
    return out


def pulser_wait_probe(config: LabConfig, samples: int = 38) -> dict[str, Any]:
    """How often and how long a request to the pulse controller waits behind someone else's
    run (the clock servo's), sampled with `describe` requests that play nothing."""
    device = config.device
    port = config.processes[config.instruments[device.pulse_controller].host].command_port
    client = CommandClient(config.bus, f"tcp://127.0.0.1:{port}", name="bench-trap-probe")
    waits: list[float] = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            client.call(device.pulse_controller, "call", {"name": "describe", "args": []})
            waits.append(time.perf_counter() - t0)
            time.sleep(0.13)
    finally:
        client.close()
    busy = [w for w in waits if w > 0.05]
    return {
        "samples": len(waits),
        "fraction_waiting": len(busy) / len(waits),
        "median_wait_s": _median(busy) if busy else 0.0,
        "median_free_reply_s": _median([w for w in waits if w <= 0.05] or [0.0]),
    }


def world_peer(config: LabConfig, pulses: list[dict[str, Any]], shots: int) -> dict[str, float]:
    """The simulated world playing the same shots in this process on virtual time: its CPU."""
    from dataclasses import replace

    from ionpilot.sim.instruments.ionpilot_pulser import Pulser
    from ionpilot.sim.world import World

    world = World(replace(config.sim))
    pulser = Pulser(world, "pulser")
    request = json.dumps({"id": 1, "op": "run", "shots": shots, "schedule": pulses})
    c0 = _cpu()
    reply = pulser.handle(request)
    cpu = _cpu() - c0
    assert reply is not None and b'"ok":true' in reply, reply[:200] if reply else reply
    return {"world_cpu_s": cpu, "world_cpu_per_shot_s": cpu / shots}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarise(
    direct: list[dict[str, Any]], queue: list[dict[str, Any]], shots: int
) -> dict[str, Any]:
    keys = [k for k in direct[0] if k != "run_calls"]
    med = {k: _median([d[k] for d in direct]) for k in keys}
    shot_time = med["shot_time_s"]
    overhead = med["overhead_s"]
    # the shortest shot for which this per-job overhead still allows the target duty cycle
    min_shot = TARGET / (1 - TARGET) * max(overhead, 0.0) / shots
    best = max(direct, key=lambda d: d["duty_cycle"])
    out: dict[str, Any] = {
        "duty_cycle": med["duty_cycle"],
        "duty_cycle_best_job": best["duty_cycle"],
        "overhead_best_job_s": best["overhead_s"],
        "target_duty_cycle": TARGET,
        "met": med["duty_cycle"] >= TARGET,
        "shot_s": med["shot_s"],
        "shot_time_s": shot_time,
        "job_wall_s": med["wall_s"],
        "per_job_overhead_s": {
            "total": overhead,
            "compile": med["compile_s"],
            "validate": med["validate_s"],
            "describe": med["describe_s"],
            "translate": med["translate_s"],
            "upload_play_readback_beyond_shots": med["upload_play_readback_beyond_shots_s"],
            "readback_decode": med["decode_s"],
        },
        "shot_duration_limit": {
            "min_shot_s_for_target": min_shot,
            "max_schedule_duration_s": None,
        },
        "run_calls_per_job": direct[0]["run_calls"],
    }
    if queue:
        ran = _median([q["ran_s"] for q in queue])
        out["queue"] = {
            "duty_cycle": shot_time / ran,
            "ran_s": ran,
            "waited_s": _median([q["waited_s"] for q in queue]),
            "round_trip_s": _median([q["round_trip_s"] for q in queue]),
            "duty_cycle_round_trip": shot_time / _median([q["round_trip_s"] for q in queue]),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--jobs", type=int, default=5, help="jobs per path (default 5)")
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--ions", type=int, default=2, help="at least this many ions (default 2)")
    parser.add_argument("--config", default=str(ROOT / "configs/sim-lab.yaml"))
    parser.add_argument("--no-queue", action="store_true", help="the direct path only")
    args = parser.parse_args()
    if args.jobs < 1 or args.shots < 1 or args.ions < 2:
        parser.error("--jobs and --shots must be >= 1, --ions >= 2 (a Bell pair)")
    text = BELL.read_text()
    with tempfile.TemporaryDirectory(prefix="bench-trap-") as tmp:
        base = load_config(args.config)
        ions = max(args.ions, base.sim.n_ions)
        lab = write_lab(Path(args.config), Path(tmp), ions)
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
            lock = wait_for(
                "the clock lock",
                lambda: daemon.call("daemon", "status", {}, timeout=2).get("state") == "locked",
                180,
            )
            started_s = time.monotonic() - t0
            direct = direct_jobs(config, text, args.shots, args.jobs)
            kept = direct_jobs(config, text, args.shots, args.jobs, describe_once=True)
            queue = [] if args.no_queue else queue_jobs(config, text, args.shots, args.jobs)
            final = daemon.call("daemon", "status", {}, timeout=5)
            occupancy = pulser_wait_probe(config)
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
        program = compile_program(
            parse_qasm(text, name="bell", device=config.device), config.device
        )
        pulses = translate_schedule(program.schedule, config.device).pulses
        out = summarise(direct, queue, args.shots)
        out["pulser_shared_with_clock_servo"] = occupancy
        once = summarise(kept[1:] or kept, [], args.shots)
        out["describe_kept_from_the_first_job"] = {
            "duty_cycle": once["duty_cycle"],
            "per_job_overhead_s": once["per_job_overhead_s"]["total"],
        }
        out["shot_duration_limit"]["max_schedule_duration_s"] = config.device.max_schedule_duration
        out["peer_world_on_virtual_time"] = world_peer(config, pulses, args.shots)
        out["lab"] = {
            "ions": ions,
            "shots": args.shots,
            "jobs": args.jobs,
            "ready_after_s": started_s,
            "locked_at_start": bool(lock),
            "lock_state_at_end": final.get("state"),
            "load_average": os.getloadavg()[0],
        }
        out["direct_jobs"] = direct
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"duty cycle {out['duty_cycle']:.3f} median, {out['duty_cycle_best_job']:.3f} best "
            f"(target {TARGET}), shot time {out['shot_time_s']:.3f} s, overhead "
            f"{out['per_job_overhead_s']['total']:.3f} s/job; the pulser was busy with the clock "
            f"servo's runs {occupancy['fraction_waiting']:.0%} of the time"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
