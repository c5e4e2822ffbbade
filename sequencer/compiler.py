"""Circuit IR to the ion's native gates: R(θ, φ), virtual RZ(λ) and MS(θ; φa, φb).

Every library gate is lowered exactly to single-qubit unitaries and XX rotations: CNOT by the
textbook ion sequence (Ry_c(π/2); RXX(π/2); Rx_c(-π/2), Rx_t(-π/2); Ry_c(-π/2)); any other
controlled single-qubit gate with one MS, as V·(P_c(α)·CRZ(β))·V† with CRZ(β) = Rz_t(β/2)·RZZ(-β/2);
Toffoli from two CNOTs and three controlled-S. Adjacent single-qubit gates on a qubit are merged
into one 2x2 matrix, which is written as RZ(z)·R(θ, φ): the R is a pulse, the RZ a frame update
that is pushed through everything after it (R(θ,φ)·RZ(λ) = RZ(λ)·R(θ,φ-λ); RZ on both qubits
shifts the phases of an MS) to the end of the circuit, where it is left as a virtual RZ per qubit.
Identities are dropped and angles normalised the way AQT does (R: θ ∈ [0, π], φ ∈ [0, 2π);
MS: θ ∈ (0, π/2], the sign carried by a phase and |θ| > π/2 folded into X pulses; RZ ∈ (-π, π]).
"""

from __future__ import annotations

import cmath
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ionpilot.sequencer.circuit import Circuit
from ionpilot.sequencer.errors import CircuitError
from ionpilot.sequencer.gates import (
    CArray,
    Mat2,
    apply_matrix,
    apply_ms,
    controlled_target,
    dagger,
    evolve_identity,
    is_controlled,
    is_single,
    mat_p,
    mat_r,
    mat_rz,
    mul,
    single_matrix,
    to_numpy,
)

TWO_PI = 2 * math.pi
EPS = 1e-12
_X: Mat2 = (0, 1, 1, 0)
_H: Mat2 = (1 / math.sqrt(2), 1 / math.sqrt(2), 1 / math.sqrt(2), -1 / math.sqrt(2))
_RY_P = mat_r(math.pi / 2, math.pi / 2)
_RY_M = mat_r(-math.pi / 2, math.pi / 2)
_RX_M = mat_r(-math.pi / 2, 0.0)


@dataclass(frozen=True, slots=True)
class NativeOp:
    """One native operation: `r` (θ, (φ,)), `ms` (θ, (φa, φb)), `measure`, `reset`, `barrier`."""

    kind: str
    qubits: tuple[int, ...]
    theta: float = 0.0
    phases: tuple[float, ...] = ()
    clbits: tuple[int, ...] = ()
    condition: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    payload: tuple[Any, ...] = ()


@dataclass
class NativeCircuit:
    """A circuit in native gates; `final_rz[q]` is the virtual RZ left on qubit q at the end."""

    num_qubits: int
    num_clbits: int
    ops: list[NativeOp]
    final_rz: list[float]
    qregs: list[tuple[str, int]] = field(default_factory=list)
    cregs: list[tuple[str, int]] = field(default_factory=list)
    # records the controller computes from earlier ones (record, inputs, accepted assignments)
    derived: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Operations by kind, with the virtual RZs that are not zero."""
        out = dict(Counter(op.kind for op in self.ops))
        out["rz"] = sum(1 for lam in self.final_rz if abs(lam) > EPS)
        return out

    def unitary(self) -> CArray:
        """The native circuit's unitary (including the final virtual RZs)."""
        return evolve_identity(self.num_qubits, self._evolve)

    def _evolve(self, state: CArray) -> CArray:
        n = self.num_qubits
        for op in self.ops:
            if op.kind == "r":
                state = apply_matrix(state, to_numpy(mat_r(op.theta, op.phases[0])), op.qubits, n)
            elif op.kind == "ms":
                state = apply_ms(state, (op.theta, op.phases[0], op.phases[1]), op.qubits, n)
        for q, lam in enumerate(self.final_rz):
            if abs(lam) > EPS:
                state = apply_matrix(state, to_numpy(mat_rz(lam)), (q,), n)
        return state

    def to_json(self) -> dict[str, Any]:
        """Plain-data form (angles in radians)."""
        return {
            "num_qubits": self.num_qubits,
            "num_clbits": self.num_clbits,
            "ops": [
                {
                    "kind": op.kind,
                    "qubits": list(op.qubits),
                    "theta": op.theta,
                    "phases": list(op.phases),
                    "clbits": list(op.clbits),
                }
                for op in self.ops
            ],
            "final_rz": list(self.final_rz),
        }


def ms_matrix(theta: float, phi_a: float, phi_b: float) -> CArray:
    """MS(θ; φa, φb) = exp(-iθ/2 σ_φa ⊗ σ_φb), first qubit most significant."""
    sa = np.array([[0, cmath.exp(-1j * phi_a)], [cmath.exp(1j * phi_a), 0]])
    sb = np.array([[0, cmath.exp(-1j * phi_b)], [cmath.exp(1j * phi_b), 0]])
    return np.asarray(
        math.cos(theta / 2) * np.eye(4) - 1j * math.sin(theta / 2) * np.kron(sa, sb),
        dtype=np.complex128,
    )


def normalise_phase(phi: float) -> float:
    """Into [0, 2π)."""
    out = phi % TWO_PI
    return 0.0 if out >= TWO_PI - 1e-15 else out


def rz_r_decompose(m: Mat2) -> tuple[float, float, float]:
    """(θ, φ, z) with m = e^{iα} RZ(z)·R(θ, φ), θ ∈ [0, π]."""
    a, b, c, d = m
    abs_a, abs_c = abs(a), abs(c)
    theta = 2 * math.atan2(abs_c, abs_a)
    if abs_a >= abs_c:
        z = cmath.phase(a.conjugate() * d)
        phi = cmath.phase(1j * a.conjugate() * c) - z if abs_c > EPS else 0.0
    else:
        phi = -cmath.phase(-1j * c.conjugate() * d) if abs_a > EPS else 0.0
        z = cmath.phase(b.conjugate() * c) - 2 * phi
    return theta, phi, z


@dataclass
class CompileReport:
    """What the compiler did: gate counts in and out, two-qubit count, estimated duration."""

    source_counts: dict[str, int]
    native_counts: dict[str, int]
    two_qubit_count: int
    estimated_duration_s: float
    compile_time_s: float
    num_qubits: int

    def to_json(self) -> dict[str, Any]:
        """Plain-data form for results."""
        return {
            "source_counts": self.source_counts,
            "native_counts": self.native_counts,
            "two_qubit_count": self.two_qubit_count,
            "estimated_duration_s": self.estimated_duration_s,
            "compile_time_s": self.compile_time_s,
            "num_qubits": self.num_qubits,
        }


class _Lowering:
    """The single-pass lowering with per-qubit pending rotations and virtual frames."""

    def __init__(self, num_qubits: int) -> None:
        self.pending: list[Mat2 | None] = [None] * num_qubits
        self.frame: list[float] = [0.0] * num_qubits
        self.out: list[NativeOp] = []

    def one(self, q: int, m: Mat2) -> None:
        p = self.pending[q]
        self.pending[q] = m if p is None else mul(m, p)

    def flush(self, q: int) -> None:
        m = self.pending[q]
        if m is None:
            return
        self.pending[q] = None
        theta, phi, z = rz_r_decompose(m)
        if theta > EPS:
            self.out.append(NativeOp("r", (q,), theta, (normalise_phase(phi - self.frame[q]),)))
        self.frame[q] += z

    def xx(self, a: int, b: int, theta: float) -> None:
        theta = math.remainder(theta, TWO_PI)
        flip = False
        if theta > math.pi / 2:
            theta -= math.pi
            flip = True
        elif theta < -math.pi / 2:
            theta += math.pi
            flip = True
        if abs(theta) > EPS:
            self.flush(a)
            self.flush(b)
            phase_a = -self.frame[a]
            if theta < 0:
                theta = -theta
                phase_a += math.pi
            self.out.append(
                NativeOp(
                    "ms",
                    (a, b),
                    theta,
                    (normalise_phase(phase_a), normalise_phase(-self.frame[b])),
                )
            )
        if flip:
            self.one(a, _X)
            self.one(b, _X)

    def cx(self, c: int, t: int) -> None:
        self.one(c, _RY_P)
        self.xx(c, t, math.pi / 2)
        self.one(c, _RX_M)
        self.one(t, _RX_M)
        self.one(c, _RY_M)

    def controlled(self, c: int, t: int, u: Mat2) -> None:
        det = u[0] * u[3] - u[1] * u[2]
        alpha = cmath.phase(det) / 2
        rot = cmath.exp(-1j * alpha)
        w0, w1 = u[0] * rot, u[1] * rot
        sin_half = math.hypot(w0.imag, abs(w1))
        if sin_half < EPS:
            self.one(c, mat_p(alpha + (0.0 if w0.real > 0 else math.pi)))
            return
        beta = 2 * math.atan2(sin_half, w0.real)
        nz = -w0.imag / sin_half
        nx = -w1.imag / sin_half
        ny = -w1.real / sin_half
        v = mul(mat_rz(math.atan2(ny, nx)), mat_r(math.acos(max(-1.0, min(1.0, nz))), math.pi / 2))
        self.one(t, dagger(v))
        self.one(c, _H)
        self.one(t, _H)
        self.xx(c, t, -beta / 2)
        self.one(c, _H)
        self.one(t, _H)
        self.one(t, mat_rz(beta / 2))
        self.one(t, v)
        self.one(c, mat_p(alpha))

    def ccx(self, a: int, b: int, t: int) -> None:
        s, sdg = mat_p(math.pi / 2), mat_p(-math.pi / 2)
        self.one(t, _H)
        self.controlled(b, t, s)
        self.cx(a, b)
        self.controlled(b, t, sdg)
        self.cx(a, b)
        self.controlled(a, t, s)
        self.one(t, _H)

    def gate(self, name: str, qubits: tuple[int, ...], params: tuple[float, ...]) -> None:
        if is_single(name):
            self.one(qubits[0], single_matrix(name, params))
        elif name in ("cx", "CX"):
            self.cx(qubits[0], qubits[1])
        elif is_controlled(name):
            self.controlled(qubits[0], qubits[1], controlled_target(name, params))
        elif name == "swap":
            a, b = qubits
            self.cx(a, b)
            self.cx(b, a)
            self.cx(a, b)
        elif name == "ccx":
            self.ccx(*qubits)
        elif name == "cswap":
            c, a, b = qubits
            self.cx(b, a)
            self.ccx(c, a, b)
            self.cx(b, a)
        else:
            raise CircuitError(f"the compiler has no decomposition for '{name}'")


def _conditional_block(
    low: _Lowering, ops: list[Any], condition: tuple[tuple[int, ...], tuple[int, ...]]
) -> None:
    """Ops that run only when `condition` holds: lowered in a copy of the frames, after which the
    frame change of the taken branch is made physical (RZ(δ) ∝ R(π, δ/2)·R(π, 0)) so both
    branches leave every qubit in the same frame."""
    touched = sorted({q for op in ops for q in op.qubits})
    for q in touched:
        low.flush(q)
    sub = _Lowering(len(low.frame))
    sub.frame = list(low.frame)
    for op in ops:
        if op.name in ("measure", "reset"):
            sub.flush(op.qubits[0])
            if op.name == "reset":
                sub.frame[op.qubits[0]] = 0.0
            window = op.params[0] if op.params else 0.0
            sub.out.append(NativeOp(op.name, op.qubits, window, clbits=op.clbits))
        elif op.name == "delay":
            for q in op.qubits:
                sub.flush(q)
            sub.out.append(NativeOp("delay", op.qubits, op.params[0]))
        elif op.name == "barrier":
            for q in op.qubits:
                sub.flush(q)
        elif op.name == "cal":
            raise CircuitError("a calibrated gate cannot be conditional")
        else:
            sub.gate(op.name, op.qubits, op.params)
    for q in touched:
        sub.flush(q)
        delta = math.remainder(sub.frame[q] - low.frame[q], TWO_PI)
        if abs(delta) > EPS:
            sub.out.append(NativeOp("r", (q,), math.pi, (0.0,)))
            sub.out.append(NativeOp("r", (q,), math.pi, (normalise_phase(delta / 2),)))
    for nop in sub.out:
        low.out.append(NativeOp(nop.kind, nop.qubits, nop.theta, nop.phases, nop.clbits, condition))


def _calibrated(low: _Lowering, op: Any) -> None:
    """A defcal's pulses: phases of plays on an ion's frame follow that ion's virtual frame."""
    for q in op.qubits:
        low.flush(q)
    payload = []
    for item in op.payload:
        if item[0] == "play" and item[6] is not None:
            kind, port, freq, phase, duration, amplitude, ion = item
            payload.append((kind, port, freq, phase - low.frame[ion], duration, amplitude, ion))
        else:
            payload.append(item)
    low.out.append(NativeOp("cal", op.qubits, payload=tuple(payload)))


def compile_circuit(circuit: Circuit) -> tuple[NativeCircuit, CompileReport]:
    """Lower `circuit` to native gates; the report's duration is filled in by the scheduler."""
    started = time.perf_counter()
    low = _Lowering(circuit.num_qubits)
    ops = circuit.ops
    i = 0
    while i < len(ops):
        op = ops[i]
        name = op.name
        if op.condition is not None:
            j = i
            while j < len(ops) and ops[j].condition == op.condition:
                j += 1
            _conditional_block(low, ops[i:j], op.condition)
            i = j
            continue
        if name == "delay":
            for q in op.qubits:
                low.flush(q)
            low.out.append(NativeOp("delay", op.qubits, op.params[0]))
            i += 1
            continue
        if name == "cal":
            _calibrated(low, op)
            i += 1
            continue
        if name in ("measure", "reset"):
            # a run of measurements (or resets) becomes one detection (pumping) window
            j = i
            seen: set[int] = set()
            while (
                j < len(ops)
                and ops[j].name == name
                and ops[j].condition is None
                and ops[j].params == op.params
                and ops[j].qubits[0] not in seen
            ):
                seen.add(ops[j].qubits[0])
                low.flush(ops[j].qubits[0])
                j += 1
            for run_op in ops[i:j]:
                if name == "reset":
                    low.frame[run_op.qubits[0]] = 0.0
                window = run_op.params[0] if run_op.params else 0.0  # a defcal's capture
                low.out.append(NativeOp(name, run_op.qubits, window, clbits=run_op.clbits))
            i = j
            continue
        if name == "barrier":
            for q in op.qubits:
                low.flush(q)
            low.out.append(NativeOp("barrier", op.qubits))
        else:
            low.gate(name, op.qubits, op.params)
        i += 1
    for q in range(circuit.num_qubits):
        low.flush(q)
    final_rz = [math.remainder(lam, TWO_PI) for lam in low.frame]
    native = NativeCircuit(
        circuit.num_qubits,
        circuit.num_clbits,
        low.out,
        final_rz,
        list(circuit.qregs),
        list(circuit.cregs),
        list(circuit.derived),
    )
    counts = native.counts()
    report = CompileReport(
        source_counts=circuit.gate_counts(),
        native_counts=counts,
        two_qubit_count=counts.get("ms", 0),
        estimated_duration_s=0.0,
        compile_time_s=time.perf_counter() - started,
        num_qubits=circuit.num_qubits,
    )
    return native, report
