"""The OpenQASM specification's own example programs through `ionpilot run-qasm --backend sim`
on a 22-ion device: each runs, or is refused for the reason that is really wrong with it; and,
read as they are, what teleport, inverseqft1/2 and qec compute and how alignment is scheduled.

The examples are not kept in this repository: set IONPILOT_OPENQASM_EXAMPLES to a checkout of
the specification's `examples/` folder (openqasm/openqasm); without it these tests are skipped.
What the dynamic and timed programs compute is tested on our own programs in
test_sequencer_programs.py, which always runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from ionpilot.cli import main
from ionpilot.config import load_config
from ionpilot.sequencer import compile_program, get_backend, parse_qasm, run_program
from ionpilot.sequencer.runner import qasm_limits
from ionpilot.sequencer.settings import DeviceSettings

ROOT = Path(__file__).resolve().parents[2]
ENV = "IONPILOT_OPENQASM_EXAMPLES"
IONS = 22

RUNS = {
    "alignment",
    "gateteleport",
    "inverseqft1",
    "inverseqft2",
    "ipe",
    "qec",
    "qft",
    "qpt",
    "rb",
    "rus",
    "teleport",
    "varteleport",
}
# file -> what the refusal must say, one list per version of the file seen in the
# specification's history (each is what is really wrong with that version)
REFUSED: dict[str, list[list[str]]] = {
    "adder": [
        # `qubit cin[1], a[4]` is the OpenQASM 2 form (47b0936)
        ["line 20", "syntax error", "qubit[4] a;"],
        # registers fixed, but the loop reads `ain`, declared as `a_in` (3affeb0)
        ["line 35", "undeclared identifier 'ain'", "did you mean 'a_in'?"],
    ],
    # my_defined_uints[a - 1] with a = 5
    "arrays": [["line 51", "index 4 out of range for size 4"]],
    "cphase": [["'CX' is not defined in OpenQASM 3", "register 'q' is never declared"]],
    "dd": [["line 26", "undefined gate 'u'"]],  # `u $3;` names no gate of stdgates.inc
    "defcal": [["line 11", "the `type:name` form is old"]],
    "msd": [["33 or more qubits", "more qubits than a state vector of the simulator can hold"]],
    "scqec": [["extern 'zfirst' is not offered by this device"]],
    # `defcal x $q` is the specification's own form (any physical qubit); the extern is not
    "t1": [["line 14", "extern 'tabulate' is not offered by this device"]],
    "vqe": [["line 24", "`fixed[...]` is no OpenQASM 3 type"]],
}
# refused in the versions above, but a later version of the specification corrects the
# program: there it must run
CORRECTED_LATER = {"adder"}


def _lab_file(tmp: Path) -> Path:
    """The simulated lab's file with a 22-ion processor (an addressed beam per ion)."""
    lines = [f"include: {ROOT / 'configs' / 'sim-lab.yaml'}", "device:", "  ions: 22"]
    lines.append("  channels:")
    for ion in range(5, IONS):
        lines.append(
            f"    raman_addr_{ion}: {{kind: beam_addressed, ion: {ion}, aom_center_frequency: "
            "110 MHz, aom_bandwidth: 20 MHz, rabi_frequency: 50 kHz}"
        )
    path = tmp / "lab22.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def lab22(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lab_file(tmp_path_factory.mktemp("spec"))


@pytest.fixture(scope="module")
def device22(lab22: Path) -> DeviceSettings:
    device: DeviceSettings = load_config(lab22).device
    return device


@pytest.fixture(scope="module")
def spec_dir() -> Path:
    where = os.environ.get(ENV, "")
    if not where:
        pytest.skip(f"{ENV} is unset (a checkout of openqasm/openqasm examples/)")
    path = Path(where)
    if not path.is_dir() or not any(path.glob("*.qasm")):
        pytest.skip(f"{ENV}={where} holds no .qasm files")
    return path


def test_every_example_is_there(spec_dir: Path):
    names = {p.stem for p in spec_dir.glob("*.qasm")}
    assert RUNS | set(REFUSED) <= names and len(RUNS | set(REFUSED)) == 21


@pytest.mark.parametrize("name", sorted(RUNS | set(REFUSED)))
def test_spec_example_runs_or_is_refused_for_what_is_wrong(name, spec_dir, lab22, capsys):
    path = spec_dir / f"{name}.qasm"
    argv = ["run-qasm", str(path), "--backend", "sim", "--config", str(lab22)]
    code = main([*argv, "--shots", "200", "--seed", "1", "--json"])
    out, err = capsys.readouterr()
    if name in RUNS or (name in CORRECTED_LATER and code == 0):
        assert code == 0, err
        result = json.loads(out)
        assert sum(result["counts"].values()) == 200
        return
    assert code == 2, out
    assert any(all(f in err for f in version) for version in REFUSED[name]), err
    assert err.count("\n") == 1 and "Traceback" not in err


def _run(text: str, device: DeviceSettings, shots: int, seed: int = 5, ideal: bool = False):
    circuit = parse_qasm(text, device=device, limits=qasm_limits("sim", device))
    program = compile_program(circuit, device)
    backend = get_backend("sim", device, ideal=ideal)
    return program, run_program(program, backend, device, shots, seed)


def test_teleport_delivers_the_state_it_was_given(spec_dir, device22):
    # U(0.3, 0.2, 0.1)|0> has P(1) = sin²(0.15); c2 after `post` (identity) must show it
    shots = 10_000
    p = math.sin(0.15) ** 2
    _, ideal = _run((spec_dir / "teleport.qasm").read_text(), device22, shots, ideal=True)
    ones = sum(v for k, v in ideal["counts"].items() if k.split()[0] == "1")
    assert abs(ones / shots - p) <= 4 * math.sqrt(p * (1 - p) / shots)  # shot noise alone
    _, result = _run((spec_dir / "teleport.qasm").read_text(), device22, shots)
    ones = sum(v for k, v in result["counts"].items() if k.split()[0] == "1")
    # with the device's errors (readout 0.2-0.6 %, preparation, dephasing over three mid-circuit
    # detections) c2 may read 1 up to ~1 % more often; 5 σ of shot noise beside that
    assert abs(ones / shots - p) <= 5 * math.sqrt(p * (1 - p) / shots) + 0.012
    # and c0, c1 are uniform: the corrections, not luck, make c2 right
    c0 = sum(v for k, v in result["counts"].items() if k.split()[2] == "1")
    assert abs(c0 / shots - 0.5) <= 5 * math.sqrt(0.25 / shots)


@pytest.mark.parametrize("name", ["inverseqft1", "inverseqft2"])
def test_inverse_qft_gives_the_phase_it_encodes(name, spec_dir, device22):
    # h on |0000> is the QFT of phase 0: the semiclassical inverse QFT must read 0000 every shot
    _, result = _run((spec_dir / f"{name}.qasm").read_text(), device22, 1000, ideal=True)
    assert set(result["counts"]) == {"0000" if name == "inverseqft1" else "0 0 0 0"}


def test_qec_corrects_the_inserted_error(spec_dir, device22):
    _, result = _run((spec_dir / "qec.qasm").read_text(), device22, 1000, ideal=True)
    assert result["counts"] == {"01 000": 1000}


def test_alignment_stretch_aligns_the_delays_with_the_cnot(spec_dir, device22):
    program, _ = _run((spec_dir / "alignment.qasm").read_text(), device22, 10, ideal=True)
    unit = device22.time_unit
    grid = device22.grid_mu
    cx = [e for e in program.schedule.events if ".q0" in e.name or ".q1" in e.name]
    t0 = min(e.start_mu for e in cx)
    t_end = max(e.end_mu for e in cx)
    (u,) = [e for e in program.schedule.events if e.name.endswith(".q2")]
    detect = next(e for e in program.schedule.events if e.kind == "detect")
    g = u.start_mu - t0
    # delay[g]; U; delay[2g] spans exactly the CNOT: g + t_U + 2g = t_cx, and the barrier after
    assert g > 0
    assert abs((detect.start_mu - u.end_mu) - 2 * g) <= 2 * grid
    assert abs(g + u.duration_mu + 2 * g - (t_end - t0)) <= 3 * grid
    assert detect.start_mu == t_end
    assert unit > 0
