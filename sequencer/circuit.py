"""The circuit IR and the Python builder API.

A `Circuit` is a flat list of `Operation`s on integer qubits and classical bits (registers are
kept only as names and sizes, for printing results). Gates are library gates by name
(`ionpilot.sequencer.gates.IR_GATES`); `measure`, `reset`, `barrier`, `delay` (idle time in
seconds) and `cal` (a calibration's pulses) are the other ops.

Dynamic circuits: a measurement writes a *record* (the classical bits of the IR are records); an
op with a `condition` (records, accepted assignments) runs only in shots whose records read one
of the accepted assignments (bit j of an assignment is record j). `outputs`, when set, says how
each bit of the result registers (`cregs`) is computed from the records at the end of a shot.
`derived` are records the pulse controller computes during the shot from earlier ones (its
registers: `classical.Registers`); `truncations` name the while loops on measurement results cut
off at their bound, each with the table that says a shot was cut off (results state the share).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ionpilot.sequencer.errors import CircuitError
from ionpilot.sequencer.gates import IR_GATES, CArray, apply_matrix, evolve_identity, gate_matrix

NON_UNITARY = ("measure", "reset", "barrier", "delay", "cal")
Condition = tuple[tuple[int, ...], tuple[int, ...]]
OutputBit = tuple[tuple[int, ...], tuple[int, ...]]
Derived = tuple[int, tuple[int, ...], tuple[int, ...]]  # record, inputs, accepted assignments
Truncation = tuple[int, int, OutputBit]  # source line, iteration bound, "cut off" over records


@dataclass(frozen=True, slots=True)
class Operation:
    """One instruction: a gate, `measure` (qubits -> clbits), `reset` or `barrier`."""

    name: str
    qubits: tuple[int, ...]
    params: tuple[float, ...] = ()
    clbits: tuple[int, ...] = ()
    line: int = 0
    condition: Condition | None = None
    payload: tuple[Any, ...] = ()


@dataclass
class Circuit:
    """A gate-level program on `num_qubits` qubits and `num_clbits` classical bits."""

    num_qubits: int
    num_clbits: int = 0
    ops: list[Operation] = field(default_factory=list)
    qregs: list[tuple[str, int]] = field(default_factory=list)
    cregs: list[tuple[str, int]] = field(default_factory=list)
    global_phase: float = 0.0
    name: str = "circuit"
    outputs: list[OutputBit] | None = None
    derived: list[Derived] = field(default_factory=list)
    truncations: list[Truncation] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.qregs and self.num_qubits:
            self.qregs = [("q", self.num_qubits)]
        if not self.cregs and self.num_clbits:
            self.cregs = [("c", self.num_clbits)]

    # --- building --------------------------------------------------------------------------

    def append(
        self, name: str, qubits: tuple[int, ...] | list[int], params: tuple[float, ...] = ()
    ) -> Circuit:
        """Append a library gate; checks name, arity and qubit range."""
        spec = IR_GATES.get(name)
        if spec is None:
            raise CircuitError(f"unknown gate '{name}'")
        qs = tuple(int(q) for q in qubits)
        if len(qs) != spec.num_qubits or len(params) != spec.num_params:
            raise CircuitError(
                f"gate '{name}' takes {spec.num_params} parameter(s) and {spec.num_qubits} "
                f"qubit(s), got {len(params)} and {len(qs)}"
            )
        self._check_qubits(qs)
        self.ops.append(Operation(name, qs, tuple(float(p) for p in params)))
        return self

    def _check_qubits(self, qs: tuple[int, ...]) -> None:
        for q in qs:
            if not 0 <= q < self.num_qubits:
                raise CircuitError(f"qubit {q} out of range (circuit has {self.num_qubits})")
        if len(set(qs)) != len(qs):
            raise CircuitError(f"repeated qubit in {qs}")

    def measure(self, qubit: int, clbit: int) -> Circuit:
        """Measure `qubit` into `clbit`."""
        self._check_qubits((qubit,))
        if not 0 <= clbit < self.num_clbits:
            raise CircuitError(f"bit {clbit} out of range (circuit has {self.num_clbits})")
        self.ops.append(Operation("measure", (qubit,), clbits=(clbit,)))
        return self

    def measure_all(self) -> Circuit:
        """Measure every qubit into the bit of the same index (adds bits if needed)."""
        if self.num_clbits < self.num_qubits:
            self.cregs.append(("meas", self.num_qubits - self.num_clbits))
            self.num_clbits = self.num_qubits
        for q in range(self.num_qubits):
            self.measure(q, q)
        return self

    def reset(self, qubit: int) -> Circuit:
        """Reset `qubit` to |0> (optical pumping)."""
        self._check_qubits((qubit,))
        self.ops.append(Operation("reset", (qubit,)))
        return self

    def barrier(self, *qubits: int) -> Circuit:
        """Forbid merging or reordering across this point (all qubits if none given)."""
        qs = qubits or tuple(range(self.num_qubits))
        self._check_qubits(tuple(qs))
        self.ops.append(Operation("barrier", tuple(qs)))
        return self

    def h(self, q: int) -> Circuit:
        """Hadamard."""
        return self.append("h", (q,))

    def x(self, q: int) -> Circuit:
        """Pauli X."""
        return self.append("x", (q,))

    def y(self, q: int) -> Circuit:
        """Pauli Y."""
        return self.append("y", (q,))

    def z(self, q: int) -> Circuit:
        """Pauli Z."""
        return self.append("z", (q,))

    def s(self, q: int) -> Circuit:
        """S = sqrt(Z)."""
        return self.append("s", (q,))

    def t(self, q: int) -> Circuit:
        """T = sqrt(S)."""
        return self.append("t", (q,))

    def tdg(self, q: int) -> Circuit:
        """T dagger."""
        return self.append("tdg", (q,))

    def sx(self, q: int) -> Circuit:
        """sqrt(X)."""
        return self.append("sx", (q,))

    def rx(self, theta: float, q: int) -> Circuit:
        """Rotation about X."""
        return self.append("rx", (q,), (theta,))

    def ry(self, theta: float, q: int) -> Circuit:
        """Rotation about Y."""
        return self.append("ry", (q,), (theta,))

    def rz(self, lam: float, q: int) -> Circuit:
        """Rotation about Z."""
        return self.append("rz", (q,), (lam,))

    def p(self, lam: float, q: int) -> Circuit:
        """Phase gate."""
        return self.append("p", (q,), (lam,))

    def u(self, theta: float, phi: float, lam: float, q: int) -> Circuit:
        """OpenQASM's U(θ, φ, λ)."""
        return self.append("U", (q,), (theta, phi, lam))

    def cx(self, c: int, t: int) -> Circuit:
        """CNOT."""
        return self.append("cx", (c, t))

    def cz(self, a: int, b: int) -> Circuit:
        """Controlled Z."""
        return self.append("cz", (a, b))

    def cp(self, lam: float, a: int, b: int) -> Circuit:
        """Controlled phase."""
        return self.append("cp", (a, b), (lam,))

    def swap(self, a: int, b: int) -> Circuit:
        """SWAP."""
        return self.append("swap", (a, b))

    def ccx(self, a: int, b: int, t: int) -> Circuit:
        """Toffoli."""
        return self.append("ccx", (a, b, t))

    # --- inspection ------------------------------------------------------------------------

    @property
    def is_dynamic(self) -> bool:
        """Whether any operation depends on a measurement result of the same shot."""
        return any(op.condition is not None for op in self.ops)

    def gate_counts(self) -> dict[str, int]:
        """How many of each operation."""
        return dict(Counter(op.name for op in self.ops))

    def unitary(self) -> CArray:
        """The circuit's unitary (gates only; measurement, reset and barrier are skipped)."""
        return circuit_unitary(self)

    def to_qasm3(self) -> str:
        """The circuit as OpenQASM 3 text (stdgates.inc names)."""
        lines = ["OPENQASM 3.0;", 'include "stdgates.inc";']
        lines += [f"qubit[{size}] {name};" for name, size in self.qregs]
        lines += [f"bit[{size}] {name};" for name, size in self.cregs]
        qnames = _flat_names(self.qregs)
        cnames = _flat_names(self.cregs)
        for op in self.ops:
            if op.condition is not None or op.name == "cal" or self.outputs is not None:
                raise CircuitError(
                    "to_qasm3 writes static circuits only (this one branches on measurements "
                    "or carries calibrated pulses)"
                )
            qs = ", ".join(qnames[q] for q in op.qubits)
            if op.name == "delay":
                lines.append(f"delay[{op.params[0] * 1e9:.0f}ns] {qs};")
                continue
            if op.name == "measure":
                lines.append(f"{cnames[op.clbits[0]]} = measure {qs};")
            elif op.name in ("reset", "barrier"):
                lines.append(f"{op.name} {qs};")
            else:
                args = f"({', '.join(repr(p) for p in op.params)})" if op.params else ""
                lines.append(f"{op.name}{args} {qs};")
        return "\n".join(lines) + "\n"


def _flat_names(regs: list[tuple[str, int]]) -> list[str]:
    return [f"{name}[{i}]" for name, size in regs for i in range(size)]


def circuit_state(circuit: Circuit) -> CArray:
    """The state the gates of `circuit` make from |0...0> (measurement, reset, barrier skipped)."""
    state = np.zeros((2**circuit.num_qubits, 1), dtype=np.complex128)
    state[0, 0] = 1.0
    return _evolve(circuit, state)[:, 0]


def circuit_unitary(circuit: Circuit) -> CArray:
    """Unitary of the gates in `circuit`, evaluated by applying them to the identity."""
    return evolve_identity(circuit.num_qubits, lambda block: _evolve(circuit, block))


def _evolve(circuit: Circuit, state: CArray) -> CArray:
    n = circuit.num_qubits
    for op in circuit.ops:
        if op.name in NON_UNITARY:
            continue
        state = apply_matrix(state, gate_matrix(op.name, op.params), op.qubits, n)
    if circuit.global_phase:
        state = state * complex(math.cos(circuit.global_phase), math.sin(circuit.global_phase))
    return state
