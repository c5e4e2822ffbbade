"""CPU cost of the simulated world on a virtual clock, per simulated hour.

Three loads: nobody looking (one advance), a 1 Hz poll of the usual readings, and a clock
servo's interrogation load (an 80 ms π probe + 2 ms detection + 20 ms dead time, back to back).
`--json` prints the figures as JSON; the ratio is simulated seconds per CPU second.
"""

from __future__ import annotations

import argparse
import json
import time

from ionpilot.sim.world import World


def cpu_per_hour(load: str) -> float:
    world = World()
    start = time.process_time()
    if load == "idle":
        world.advance(3600.0)
    elif load == "poll_1hz":
        for _ in range(3600):
            world.wavemeter_read(1)
            world.cooled_count_rate()
            world.comb_last_timestamp()
            world.advance(1.0)
    else:
        aom = world.clock_line_aom_hz()
        while world.now() < 3600.0:
            world.probe_clock(aom, 0.08, detection_s=0.002, dead_time_s=0.018)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = {load: cpu_per_hour(load) for load in ("idle", "poll_1hz", "interrogation")}
    report = {
        "cpu_s_per_simulated_hour": figures,
        "speedup": {k: 3600.0 / v if v > 0 else float("inf") for k, v in figures.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for load, cpu in figures.items():
            print(f"{load:14s} {cpu:8.4f} CPU s per simulated hour ({3600 / cpu:,.0f}x real time)")


if __name__ == "__main__":
    main()
