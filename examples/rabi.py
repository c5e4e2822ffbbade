"""Rabi flopping on the clock transition, as a script: the clock laser borrowed from the lock
(which holds over meanwhile), probe pulses of growing length played through the sequencer,
one QCoDeS dataset, a fit of the π time with its uncertainty, recorded as the lab's `pi_time`
calibration.

    ionpilot run examples/rabi.py --config configs/sim-lab.yaml        # under `ionpilot up`
    python examples/rabi.py --config configs/sim-lab.yaml --points 16
"""

from __future__ import annotations

import argparse

import ionpilot
from ionpilot.experiments import default_lab_file
from ionpilot.experiments.clock import RabiSettings, rabi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=default_lab_file(), help="the lab file")
    parser.add_argument("--stop", type=float, default=36e-3, help="longest probe (s)")
    parser.add_argument("--points", type=int, default=12, help="probe durations")
    parser.add_argument("--shots", type=int, default=30, help="shots per point")
    args = parser.parse_args()
    settings = RabiSettings(stop=args.stop, points=args.points, shots=args.shots)
    with ionpilot.connect(args.config, timeout=10.0) as lab:
        result = rabi(lab, settings)
    fit = result["fit"]
    if not fit["converged"]:
        raise SystemExit(f"the fit did not converge: {fit['message']} (run {result['run_id']})")
    print(
        f"pi time {result['pi_time_s'] * 1e3:.3f} ± {result['pi_time_error_s'] * 1e3:.3f} ms "
        f"(run {result['run_id']} in {result['database']}, plot {result['png']})"
    )


if __name__ == "__main__":
    main()
