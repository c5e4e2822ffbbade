"""bench/drivers.py still measures what it says: one short round, every instrument read both
ways, CPU cost per read reported. (The figures themselves are the bench's business, not a test's.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_driver_bench_reads_every_instrument_both_ways() -> None:
    command = [sys.executable, str(ROOT / "bench" / "drivers.py"), "--json", "--rounds", "1"]
    out = subprocess.run(
        [*command, "--seconds", "0.5"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["instruments"] == 13
    ratios = summary["per_instrument_host_over_bare"]
    assert set(ratios) == {
        "rf_drive",
        "dc_electrodes",
        "oven",
        "laser_369",
        "laser_935",
        "laser_399",
        "laser_435",
        "wavemeter",
        "comb",
        "beat_counter",
        "shutter_399",
        "shutter_935",
        "pulser",
    }
    assert all(r > 0 for r in ratios.values()), ratios  # every instrument answered both ways
    assert summary["host_reads_per_s"] > 0 and summary["bare_reads_per_s"] > 0
    assert summary["host_cpu_us_per_read"] > 0 and summary["bare_cpu_us_per_read"] > 0
    assert summary["host_to_bare_ratio"] == pytest.approx(
        summary["host_reads_per_s"] / summary["bare_reads_per_s"], rel=1e-2
    )
    if len(os.sched_getaffinity(0)) > 1:
        placement = summary["placement"]
        assert placement["kind"] == "pinned"
        measured = placement["measured_side_cpu"]
        others = placement["simulated_lab_and_client_cpus"]
        assert measured != others
        threads = placement["threads"]
        # every thread of each party, not only its main thread, ran where the JSON says
        for party, cpus in (
            ("simulated_lab", others),
            ("bench_client", others),
            ("bare_loop", measured),
        ):
            assert threads[party], party
            assert all(t["cpus"] == cpus for t in threads[party]), (party, threads[party])
        assert sum(t["cpus"] == measured for t in threads["driver_host"]) >= 13  # its workers
    assert summary["host_switches_per_read"] > 0 and summary["bare_switches_per_read"] > 0
