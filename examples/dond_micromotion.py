"""Micromotion seen in the fluorescence: a plain QCoDeS `dond` on the live lab.

Sweeps DC electrode ch01 and reads the photon counts of a fixed gate: excess micromotion
(modulation index β) scales the scattering by J0(β)², so the counts peak where the stray field
is compensated. Everything is ordinary QCoDeS over `ionpilot.qcodes_station(lab)`; the dataset
lands in the lab's data_dir (experiments/experiments.db) with the station snapshot and the lab
file's sha256.

    python examples/dond_micromotion.py --config configs/sim-lab.yaml   # under `ionpilot up`
    ionpilot run examples/dond_micromotion.py --config configs/sim-lab.yaml
"""

from __future__ import annotations

import argparse

from qcodes.dataset import LinSweep, dond, load_or_create_experiment
from qcodes.dataset.data_set_protocol import DataSetProtocol

import ionpilot
from ionpilot.experiments import default_lab_file
from ionpilot.script import Lab


def run(lab: Lab, start_v: float = -0.5, stop_v: float = 0.5, points: int = 11) -> DataSetProtocol:
    """Sweep dc_electrodes.ch01.voltage from start_v to stop_v, reading pulser.counts; the
    dataset. ch01 is put back to where it was."""
    station = ionpilot.qcodes_station(lab)
    ch01 = station.dc_electrodes.ch01.voltage
    counts = station.pulser.counts
    before = ch01()
    experiment = load_or_create_experiment("micromotion", sample_name=lab.config.lab.name)
    try:
        dataset, _, _ = dond(
            LinSweep(ch01, start_v, stop_v, points, delay=0.0),
            counts,
            exp=experiment,
            measurement_name="micromotion ch01",
            do_plot=False,  # progress: QCoDeS's bar when `ionpilot run` turns it on
        )
    finally:
        ch01(before)
    assert isinstance(dataset, DataSetProtocol)
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=default_lab_file(), help="the lab file")
    parser.add_argument("--start", type=float, default=-0.5, help="first ch01 voltage (V)")
    parser.add_argument("--stop", type=float, default=0.5, help="last ch01 voltage (V)")
    parser.add_argument("--points", type=int, default=11, help="number of points")
    args = parser.parse_args()
    with ionpilot.connect(args.config, timeout=10.0) as lab:
        dataset = run(lab, args.start, args.stop, args.points)
    data = dataset.to_pandas_dataframe()
    print(data.to_string())
    print(f"run id {dataset.captured_run_id} in {dataset.path_to_db}")


if __name__ == "__main__":
    main()
