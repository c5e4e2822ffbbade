"""Sequencer benchmark: compile speed against qiskit's transpiler (measured in the same run, on
the same circuits), simulation time of a 10-qubit, 200-gate circuit with 1000 shots, and the
teleportation with feed-forward (tests/sequencer/qasm/teleport_post_v3.qasm: mid-circuit
measurement, conditional corrections, a post-rotation) end to end with 1000 shots. Times are CPU time of this process (the machine is shared).

    .venv/bin/python bench/sequencer.py --json

qiskit is an optional extra (`pip install .[bench]`); without it only the ionpilot figures are
printed. Targets: compile_speed_ratio >= 5, simulation <= 0.1 s, teleport <= 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ionpilot.sequencer.circuit import Circuit
from ionpilot.sequencer.compiler import compile_circuit
from ionpilot.sequencer.device import with_ions
from ionpilot.sequencer.library import benchmark_suite, random_circuit
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.runner import compile_program, qasm_limits, run_program
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.simulator import SimulatedChain

REPEATS = 3
TELEPORT = Path(__file__).resolve().parents[1] / "tests/sequencer/qasm/teleport_post_v3.qasm"


def to_qiskit(circuit: Circuit) -> Any:
    """The same circuit as a qiskit QuantumCircuit."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import library as lib

    gates: dict[str, Any] = {
        "p": lib.PhaseGate, "phase": lib.PhaseGate, "x": lib.XGate, "y": lib.YGate, "z": lib.ZGate,
        "h": lib.HGate, "s": lib.SGate, "sdg": lib.SdgGate, "t": lib.TGate, "tdg": lib.TdgGate,
        "sx": lib.SXGate, "rx": lib.RXGate, "ry": lib.RYGate, "rz": lib.RZGate, "cx": lib.CXGate,
        "CX": lib.CXGate, "cy": lib.CYGate, "cz": lib.CZGate, "cp": lib.CPhaseGate,
        "cphase": lib.CPhaseGate, "crx": lib.CRXGate, "cry": lib.CRYGate, "crz": lib.CRZGate,
        "ch": lib.CHGate, "swap": lib.SwapGate, "ccx": lib.CCXGate, "cswap": lib.CSwapGate,
        "cu": lib.CUGate, "id": lib.IGate, "u1": lib.U1Gate, "u2": lib.U2Gate, "u3": lib.U3Gate,
        "U": lib.UGate,
    }  # fmt: skip
    qc = QuantumCircuit(circuit.num_qubits)
    for op in circuit.ops:
        if op.name in gates:
            qc.append(gates[op.name](*op.params), list(op.qubits))
    return qc


def bench_compile(circuits: list[Circuit]) -> dict[str, Any]:
    """Best-of-N total compile time for ionpilot and (if installed) qiskit."""
    ours = min(_time(lambda: [compile_circuit(c) for c in circuits]) for _ in range(REPEATS))
    out: dict[str, Any] = {
        "circuits": len(circuits),
        "ionpilot_compile_s": ours,
        "ionpilot_compile_per_circuit_ms": ours / len(circuits) * 1e3,
    }
    try:
        from qiskit import __version__ as qiskit_version
        from qiskit import transpile
    except ImportError:
        out["qiskit"] = "missing (pip install qiskit, or the [bench] extra)"
        return out
    qcs = [to_qiskit(c) for c in circuits]
    transpile(qcs[0], basis_gates=["r", "rz", "rxx"], optimization_level=1)  # warm-up

    def run_qiskit() -> None:
        for qc in qcs:
            transpile(qc, basis_gates=["r", "rz", "rxx"], optimization_level=1)

    theirs = min(_time(run_qiskit) for _ in range(REPEATS))
    out.update(
        {
            "qiskit": qiskit_version,
            "qiskit_transpile_s": theirs,
            "compile_speed_ratio": theirs / ours,
        }
    )
    return out


def bench_simulation() -> dict[str, Any]:
    """10 qubits, 200 gates, 1000 shots: compile + schedule + simulate, ideal and noisy."""
    device = with_ions(DeviceSettings(), 10)
    circuit = random_circuit(
        10, 200, 2024, names=["h", "x", "rx", "ry", "rz", "t", "cx", "cz", "cp"]
    )
    out: dict[str, Any] = {"qubits": 10, "gates": len(circuit.ops), "shots": 1000}
    for ideal in (True, False):
        chain = SimulatedChain(device, ideal=ideal)
        program = compile_program(circuit, device)
        run_s = min(
            _time(lambda c=chain, p=program: c.run(p.schedule, 1000, 7)) for _ in range(REPEATS)
        )
        total_s = min(
            _time(lambda c=chain: run_program(compile_program(circuit, device), c, device, 1000, 7))
            for _ in range(REPEATS)
        )
        key = "ideal" if ideal else "noisy"
        out[f"{key}_simulate_s"] = run_s
        out[f"{key}_end_to_end_s"] = total_s
        out["native_pulses"] = sum(1 for e in program.schedule.events if e.kind == "pulse")
    return out


def bench_teleport() -> dict[str, Any]:
    """teleport_post_v3.qasm, 1000 shots, parse + compile + schedule + shot-by-shot simulation."""
    device = DeviceSettings()
    text = TELEPORT.read_text()
    out: dict[str, Any] = {"program": "teleport_post_v3.qasm", "shots": 1000}
    for ideal in (True, False):
        chain = SimulatedChain(device, ideal=ideal)

        def run(c: SimulatedChain = chain) -> None:
            circuit = parse_qasm(text, device=device, limits=qasm_limits("sim", device))
            run_program(compile_program(circuit, device), c, device, 1000, 7)

        out[f"{'ideal' if ideal else 'noisy'}_end_to_end_s"] = min(
            _time(run) for _ in range(REPEATS)
        )
    return out


def _time(fn: Any) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {
        "compile": bench_compile(benchmark_suite()),
        "simulation": bench_simulation(),
        "teleport": bench_teleport(),
        "targets": {
            "compile_speed_ratio": ">= 5",
            "simulation_s": "<= 0.1",
            "teleport_s": "<= 0.2",
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for section, values in result.items():
            print(section)
            for key, value in values.items():
                print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
