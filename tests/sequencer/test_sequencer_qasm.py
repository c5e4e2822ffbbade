"""OpenQASM 2 and 3 frontends: what is accepted, what it means, and precise errors for the rest."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ionpilot.cli import main
from ionpilot.sequencer import QasmError, parse_qasm, run_qasm
from ionpilot.sequencer.gates import process_fidelity
from ionpilot.sequencer.qasm_program import NeedsShotByShot
from ionpilot.sequencer.settings import DeviceSettings

QASM_DIR = Path(__file__).parent / "qasm"
V3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


def test_v2_adder_adds():
    c = parse_qasm((QASM_DIR / "adder_v2.qasm").read_text())
    assert c.num_qubits == 10 and c.num_clbits == 5
    u = c.unitary()
    outcome = int(np.argmax(np.abs(u[:, 0])))
    # b = 1 + 15 = 16 -> b = 0000, cout = 1
    b_bits = [(outcome >> q) & 1 for q in (5, 6, 7, 8)]
    assert b_bits == [0, 0, 0, 0] and (outcome >> 9) & 1 == 1


def test_v2_and_v3_definitions_agree():
    v2 = parse_qasm((QASM_DIR / "qelib_all_v2.qasm").read_text())
    assert v2.num_qubits == 3
    # same gates through stdgates.inc (names that exist in both) must give the same unitary
    body = "x q[0]; y q[1]; h q[2]; s q[0]; t q[1]; cx q[0],q[1]; cz q[1],q[2]; ccx q[0],q[1],q[2]; crz(0.7) q[1],q[0]; swap q[0],q[2];"
    a = parse_qasm('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\n' + body)
    b = parse_qasm(V3 + "qubit[3] q;\n" + body)
    assert process_fidelity(a.unitary(), b.unitary()) > 1 - 1e-12


def test_user_rxx_definition_works():
    c = parse_qasm((QASM_DIR / "user_rxx_v3.qasm").read_text())
    assert c.gate_counts()["cx"] == 6


def test_loops_constants_and_expressions():
    c = parse_qasm((QASM_DIR / "qft4_v3.qasm").read_text())
    assert c.gate_counts()["cp"] == 6
    angles = sorted(op.params[0] for op in c.ops if op.name == "cp")
    assert math.isclose(angles[0], math.pi / 8)


def test_registers_and_bit_order():
    result = run_qasm(
        (QASM_DIR / "registers_v3.qasm").read_text(), _sim(), DeviceSettings(), shots=100, seed=1
    )
    # a = [1, 0] into ca, b = 1 into cb: last register leftmost, bit 0 rightmost
    assert result["counts"] == {"1 01": 100}


def test_modifiers_are_exact():
    src = V3 + "qubit[2] q;\nctrl @ x q[0], q[1];\ninv @ s q[0];\npow(2) @ t q[1];\n"
    ref = V3 + "qubit[2] q;\ncx q[0], q[1];\nsdg q[0];\ns q[1];\n"
    assert process_fidelity(parse_qasm(src).unitary(), parse_qasm(ref).unitary()) > 1 - 1e-12


def test_u3_global_phase_matters_under_control():
    a = parse_qasm(V3 + "qubit[2] q;\nctrl @ u3(0.1, 0.2, 0.3) q[0], q[1];\n")
    b = parse_qasm(V3 + "qubit[2] q;\ncu(0.1, 0.2, 0.3, -0.25) q[0], q[1];\n")
    assert process_fidelity(a.unitary(), b.unitary()) > 1 - 1e-12


def _sim():
    from ionpilot.sequencer import get_backend

    return get_backend("sim", DeviceSettings(), ideal=True)


INVALID = [
    ("syntax", V3 + "qubit[2] q;\nh q[0]\nx q[1];\n", 5, "syntax error"),
    ("undefined gate", V3 + "qubit[2] q;\nfoo q[0];\n", 4, "undefined gate 'foo'"),
    ("no include", "OPENQASM 3.0;\nqubit[2] q;\nh q[0];\n", 3, "undefined gate 'h'"),
    ("arity", V3 + "qubit[2] q;\ncx q[0];\n", 4, "acts on 2 qubit(s), 1 given"),
    ("parameters", V3 + "qubit[2] q;\nrx(0.1, 0.2) q[0];\n", 4, "takes 1 parameter(s), 2 given"),
    ("out of range", V3 + "qubit[2] q;\nx q[2];\n", 4, "index 2 out of range"),
    ("undeclared", V3 + "qubit[2] q;\nx r[0];\n", 4, "undeclared qubit register 'r'"),
    ("same qubit", V3 + "qubit[2] q;\ncx q[1], q[1];\n", 4, "same qubit twice"),
    ("while", V3 + "qubit q;\nwhile (true) { x q; }\n", 4, "still running after 1000 iterations"),
    ("range", V3 + "qubit q;\nfor int i in [0:19999999] { x q; }\n", 4, "the limit is"),
    ("extern", V3 + "extern tabulate(int[32]) -> bit;\n", 3, "extern 'tabulate' is not offered"),
    (
        "stray break",
        V3 + "qubit q;\nbit c = measure q;\nwhile (true) { if (c) break; }\n",
        5,
        "break",
    ),
    ("negctrl", V3 + "qubit[2] q;\nnegctrl @ x q[0], q[1];\n", 4, "negctrl"),
    ("opaque", 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\nopaque g a;\n', 4, "opaque"),
    ("redefinition", V3 + "gate h a { U(0, 0, 0) a; }\n", 3, "already defined"),
    ("include", V3 + 'include "other.inc";\n', 3, "cannot include"),
    (
        "measure size",
        V3 + "qubit[2] q;\nbit[3] c;\nc = measure q;\n",
        5,
        "cannot assign 2 bits to bit[3]",
    ),
    ("bad function", V3 + "qubit q;\nrx(foo(1)) q;\n", 4, "undefined function 'foo'"),
    (
        "calibration for any physical qubit",
        V3 + 'defcalgrammar "openpulse";\ndefcal h $anyone { }\n',
        4,
        "defcal h $anyone: a calibration for any physical qubit is not offered by this device",
    ),
    (
        "named physical qubit outside a defcal",
        V3 + "qubit[2] q;\nh $anyone;\n",
        4,
        "a physical qubit is `$` and a number",
    ),
    (
        "old calibration parameter",
        V3 + 'defcalgrammar "openpulse";\ndefcal rx(angle[16]:a) $1 { }\n',
        4,
        "calibration parameters are written `angle[20] theta`",
    ),
    (
        "fixed-point type",
        V3 + "qubit q;\nfixed[8, 8] gain = 1.5;\n",
        4,
        "`fixed[...]` is no OpenQASM 3 type",
    ),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_programs_give_specific_errors_and_run_nothing(case):
    _, text, line, fragment = case
    calls = []

    class Spy:
        name = "spy"

        def run(self, schedule, shots, seed=None):
            calls.append(schedule)
            raise AssertionError("must not run")

    with pytest.raises(QasmError) as info:
        run_qasm(text, Spy(), DeviceSettings(), shots=10, seed=1)
    assert fragment in str(info.value)
    assert info.value.line == line
    assert info.value.column is not None and info.value.column >= 1
    assert calls == []


@pytest.mark.parametrize("path", sorted(QASM_DIR.glob("*.qasm")), ids=lambda p: p.name)
def test_cli_runs_every_test_file(path, capsys):
    try:
        n = parse_qasm(path.read_text()).num_qubits
    except NeedsShotByShot:
        n = 0  # a loop on measurement results: run-qasm walks it shot by shot
    if n > DeviceSettings().ions:
        pytest.skip("more qubits than the default device")
    code = main(["run-qasm", str(path), "--shots", "200", "--ideal", "--seed", "3", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)
    assert sum(doc["counts"].values()) == 200
    assert math.isclose(sum(doc["probabilities"].values()), 1.0, abs_tol=1e-9)
    assert set(doc) >= {"counts", "probabilities", "intervals", "compile", "device"}
    for lo, hi in doc["intervals"].values():
        assert 0 <= lo <= hi <= 1


def test_cli_bell_v2_probabilities(capsys):
    code = main(["run-qasm", str(QASM_DIR / "bell_v2.qasm"), "--ideal", "--json", "--seed", "1"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["probabilities"] == pytest.approx({"00": 0.5, "11": 0.5}, abs=1e-12)


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.qasm"
    bad.write_text(V3 + "qubit q;\nfoo q;\n")
    assert main(["run-qasm", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 4" in err and "Traceback" not in err
    assert main(["run-qasm", str(tmp_path / "missing.qasm")]) == 2
    assert main(["run-qasm", str(QASM_DIR / "bell_v2.qasm"), "--backend", "trap"]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "trap backend" in err


def test_a_huge_loop_range_is_refused_before_it_is_built():
    """Issue 19, finding 6: 56 bytes of source asked for a 20-million-int list (234 -> 993 MB)."""
    import tracemalloc

    from ionpilot.sequencer.qasm import QasmError, parse_qasm

    tracemalloc.start()
    try:
        for source in (
            "OPENQASM 3.0;\nqubit[1] q;\nfor int i in [0:19999999] {}\n",
            'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nx q[0:99999999];\n',
        ):
            with pytest.raises(QasmError):
                parse_qasm(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"peak {peak / 1e6:.0f} MB"
