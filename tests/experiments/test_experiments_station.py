"""`ionpilot.qcodes_station(lab)` on the lab under `ionpilot up`: a plain QCoDeS `dond` (the
example script) sweeps a DC electrode into a dataset in the lab's data_dir, read back with
units, snapshot and the lab file's hash; the owner's limits hold inside `dond`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from qcodes.dataset import LinSweep, dond, load_by_run_spec
from uplab import UpLab

import ionpilot
from ionpilot.bus.codec import BusError
from ionpilot.experiments.station import lab_file_sha256

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dond_micromotion.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dond_micromotion", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dond_example_writes_a_dataset_read_back_with_units_and_snapshot(
    up_lab: UpLab,
) -> None:
    lab = up_lab.lab
    before = lab.dc_electrodes.ch01.voltage.get()
    dataset = example().run(lab, -0.4, 0.4, 5)
    assert Path(dataset.path_to_db).parent == Path(lab.config.lab.data_dir) / "experiments"
    back = load_by_run_spec(captured_run_id=dataset.captured_run_id)
    specs = {p.name: p for p in back.get_parameters()}
    assert specs["dc_electrodes_ch01_voltage"].unit == "V"
    assert specs["pulser_counts"].depends_on == "dc_electrodes_ch01_voltage"
    data = back.get_parameter_data()["pulser_counts"]
    assert list(data["dc_electrodes_ch01_voltage"]) == pytest.approx([-0.4, -0.2, 0.0, 0.2, 0.4])
    assert len(data["pulser_counts"]) == 5
    assert all(c >= 0 for c in data["pulser_counts"])
    snapshot = back.snapshot
    assert snapshot is not None
    station = snapshot["station"]
    assert station["metadata"]["ionpilot"]["lab_file_sha256"] == lab_file_sha256(up_lab.lab_file)
    voltage = station["components"]["dc_electrodes"]["submodules"]["ch01"]["parameters"]
    assert voltage["voltage"]["unit"] == "V"
    assert voltage["voltage"]["metadata"]["allowed"] == [-5.0, 5.0]
    assert lab.dc_electrodes.ch01.voltage.get() == pytest.approx(before)  # put back


def test_a_set_beyond_the_limit_inside_dond_is_refused_and_nothing_applied(
    up_lab: UpLab,
) -> None:
    lab = up_lab.lab
    station = ionpilot.qcodes_station(lab, ["dc_electrodes", "pulser"])
    ch02 = station.dc_electrodes.ch02.voltage
    before = lab.dc_electrodes.ch02.voltage.get()
    with pytest.raises(BusError) as refused:
        dond(
            LinSweep(ch02, 6.0, 7.0, 3),  # the lab allows -5..5 V
            station.pulser.counts,
            do_plot=False,
            show_progress=False,
        )
    assert refused.value.code == "out_of_limits"
    assert lab.dc_electrodes.ch02.voltage.get() == pytest.approx(before)
    assert lab.call("dc_electrodes", "get", {"name": "ch02.voltage"})["value"] == pytest.approx(
        before
    )


def test_an_instrument_the_lab_lacks_is_named(up_lab: UpLab) -> None:
    with pytest.raises(BusError) as unknown:
        ionpilot.qcodes_station(up_lab.lab, ["dc_electrodes", "no_such_box"])
    assert unknown.value.code == "unknown_target"
    assert "no_such_box" in unknown.value.message
