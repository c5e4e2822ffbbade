"""The OpenQASM specification's own example programs through `ionpilot run-qasm --backend sim`
on a 22-ion device: each runs, or is refused for the reason that is really wrong with it.

The examples are not kept in this repository: set IONPILOT_OPENQASM_EXAMPLES to a checkout of
the specification's `examples/` folder (openqasm/openqasm); without it these tests are skipped.
What the dynamic and timed programs compute is tested on our own programs in
test_sequencer_programs.py, which always runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ionpilot.cli import main

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
    "defcal": [["line 11", "the `type:name` form is old", "'$q': a physical qubit is"]],
    "msd": [["33 or more qubits", "more qubits than a state vector of the simulator can hold"]],
    "scqec": [["extern 'zfirst' is not offered by this device"]],
    "t1": [["line 22", "'$q': a physical qubit is `$` and a number"]],
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
