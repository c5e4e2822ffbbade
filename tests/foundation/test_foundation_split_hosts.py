"""Instruments split over two driver-host processes: `ionpilot up` starts one host per process
that owns instruments, each on its own CPU, and the lab locks through both (then `up` is
stopped: the lock, not a fixed duration, decides how long the test takes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from labprocs import (
    UpRun,
    command_client,
    daemon_status,
    free_ports,
    lab_on_free_ports,
    locked_and_idle,
)

from ionpilot.bus.client import CommandClient
from ionpilot.commands.up import child_specs, driver_host_cpus, driver_host_processes
from ionpilot.config import load_config

LASERS = ("laser_369", "laser_935", "laser_399", "laser_435")


def split_lab(tmp: Path) -> Path:
    """The default lab on free ports, its lasers owned by a second host `drivers_lasers`."""
    lab = lab_on_free_ports(tmp, "split")
    lines = lab.read_text().splitlines()
    port = next(p for p in free_ports(8) if str(p) not in lab.read_text())
    out = []
    for line in lines:
        name = line.strip().split(":", 1)[0]
        moved = name in LASERS and line.startswith("  ")
        out.append(line.rstrip("}") + ", host: drivers_lasers}" if moved else line)
        if line == "processes:":
            out.append(f"  drivers_lasers: {{command_port: {port}}}")
    lab.write_text("\n".join(out) + "\n")
    return lab


def test_every_instrument_owning_process_gets_a_host_on_its_own_cpu(tmp_path: Path) -> None:
    config = load_config(split_lab(tmp_path))
    assert {n for n, i in config.instruments.items() if i.host == "drivers_lasers"} == set(LASERS)
    assert driver_host_processes(config) == ["drivers", "drivers_lasers"]
    specs = {spec.name: spec for spec in child_specs("lab.yaml", config)}
    assert [n for n in specs if n.startswith("drivers")] == ["drivers", "drivers_lasers"]
    for host in ("drivers", "drivers_lasers"):
        argv = specs[host].argv
        assert argv[argv.index("--process") + 1] == host
        assert specs[host].heartbeat == host
    cpus = [
        spec.argv[spec.argv.index("--cpu") + 1] for spec in specs.values() if "--cpu" in spec.argv
    ]
    assert cpus == driver_host_cpus(2)
    if len(os.sched_getaffinity(0)) > 1:
        assert len(set(cpus)) == 2, cpus  # never two hosts on one CPU while another is free


def test_hosts_get_distinct_cpus_until_they_run_out() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    many = driver_host_cpus(len(allowed) + 1)
    if len(allowed) < 2:
        assert many == ["auto"] * len(many)
        return
    assert many[0] == str(allowed[-1])  # the CPU `--cpu auto` picks for a lone host
    assert sorted(many[: len(allowed)]) == sorted(map(str, allowed))
    assert many[len(allowed)] == many[0]


def _thread_cpus(pid: int) -> set[str]:
    """The CPU lists the threads of `pid` may run on."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.add(line.split(":", 1)[1].strip())
    return found


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_split_lab_locks_through_both_hosts(tmp_path: Path) -> None:
    lab = split_lab(tmp_path)
    config = load_config(lab)
    summary_path = tmp_path / "summary.json"
    with UpRun(lab, 150, tmp_path, "--summary-json", str(summary_path), "--quiet") as up:
        assert up.wait_until(lambda: "drivers_lasers" in up.pids, 60, 0.2), up.tail()
        endpoint = f"tcp://127.0.0.1:{config.processes['drivers_lasers'].command_port}"
        with CommandClient(config.bus, endpoint) as client:

            def answers() -> bool:
                reply = client.request("laser_369", "get", {"name": "current"}, timeout=2.0)
                return reply.ok

            assert up.wait_until(answers, 40, 0.2), up.tail()
            reply = client.request("laser_369", "get", {"name": "current"}, timeout=2.0)
            assert reply.ok and reply.value["unit"] == "A", reply
            described = client.call("drivers_lasers", "describe", {}, timeout=2.0)
        assert set(described["instruments"]) == set(LASERS)
        if len(os.sched_getaffinity(0)) > 1:  # each host's Python threads on a CPU of its own
            pinned = {
                host: {c for c in _thread_cpus(up.pids[host][-1]) if c.isdigit()}
                for host in ("drivers", "drivers_lasers")
            }
            assert all(len(cpus) == 1 for cpus in pinned.values()), pinned
            assert pinned["drivers"] != pinned["drivers_lasers"], pinned
        with command_client(config, "daemon") as daemon:  # locked through both hosts
            assert up.wait_until(lambda: locked_and_idle(daemon_status(daemon)), 120, 0.2), (
                daemon_status(daemon),
                up.tail(),
            )
        assert up.stop() == 0, up.tail()
    summary = json.loads(summary_path.read_text())
    assert summary["time_to_lock_s"] is not None, summary
    assert summary["final_state"] == "locked", summary
    assert summary["processes"]["drivers_lasers"]["restarts"] == 0, summary
    assert not up.left_behind()
