"""Timing of OpenQASM programs: durations with stretches, `durationof`, and solving stretches.

A duration is `Linear`: fixed seconds plus stretch terms. The device's native gate durations
come from the scheduler itself (a block is compiled and scheduled alone, as the pulses would
be). At a sync point (a barrier, the end of a box, the end of the program) the delays that hold
stretches are given values so that every qubit of the section reaches the sync point together:
a small linear programme (scipy's HiGHS) minimises the section's length subject to each qubit's
path (its gates as scheduled plus its delays) ending at that length, every delay being
non-negative and every stretch non-negative, as the specification's stretch rules ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ionpilot.sequencer.circuit import Circuit, Operation
from ionpilot.sequencer.errors import QasmError
from ionpilot.sequencer.settings import DeviceSettings


@dataclass(frozen=True)
class Linear:
    """seconds + Σ coefficient · stretch."""

    seconds: float
    terms: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def stretch(name: str) -> Linear:
        """A bare stretch variable."""
        return Linear(0.0, {name: 1.0})

    def add(self, other: Linear) -> Linear:
        """Sum."""
        terms = dict(self.terms)
        for k, v in other.terms.items():
            terms[k] = terms.get(k, 0.0) + v
        return Linear(self.seconds + other.seconds, {k: v for k, v in terms.items() if v})

    def scale(self, factor: float) -> Linear:
        """Product with a number."""
        return Linear(self.seconds * factor, {k: v * factor for k, v in self.terms.items() if v})


class TimingModel:
    """The device's timing as the scheduler sees it."""

    def __init__(self, device: DeviceSettings) -> None:
        self.device = device

    def end_times(self, ops: list[Operation], num_qubits: int) -> list[float]:
        """Seconds from the start of `ops` at which each qubit is free again."""
        from ionpilot.sequencer.compiler import compile_circuit
        from ionpilot.sequencer.schedule import build_schedule

        if num_qubits > self.device.ions:
            raise QasmError(
                f"timing needs {num_qubits} qubits; the device has {self.device.ions} ions"
            )
        circuit = Circuit(num_qubits, _clbits(ops), [op for op in ops if op.name != "barrier"])
        native, _ = compile_circuit(circuit)
        ready: list[int] = []
        schedule = build_schedule(native, self.device, ready_out=ready)
        start = schedule.events[1].end_mu  # after cooling and preparation
        return [(r - start) * self.device.time_unit for r in ready]

    def duration(self, ops: list[Operation], num_qubits: int) -> float:
        """How long `ops` take on the device (durationof)."""
        if not ops:
            return 0.0
        return max(self.end_times(ops, num_qubits), default=0.0)

    def solve(
        self,
        section: list[Operation],
        num_qubits: int,
        fixed_s: float | None,
        qubits: list[int] | None,
    ) -> list[Operation]:
        """`section` with every stretch-holding delay given its value."""
        from scipy.optimize import linprog

        stretchy = [op for op in section if op.name == "delay" and op.payload]
        names = sorted({name for op in stretchy for name, _ in op.payload})
        # the stretch delays stay in place with no length: they order the pulses as the real
        # ones will (a delay ends the merging of single-qubit gates before it)
        rest = [
            Operation("delay", op.qubits, (0.0,), line=op.line)
            if op.name == "delay" and op.payload
            else op
            for op in section
        ]
        ends = self.end_times(rest, num_qubits)
        involved = set(qubits or [])
        for op in section:
            involved.update(op.qubits)
        n = len(names)
        col = {name: i for i, name in enumerate(names)}
        a_eq: list[list[float]] = []
        b_eq: list[float] = []
        a_ub: list[list[float]] = []
        b_ub: list[float] = []
        for q in sorted(involved):
            const = ends[q]
            coef = np.zeros(n + 1)
            for op in stretchy:
                if q in op.qubits:
                    const += op.params[0]
                    for name, c in op.payload:
                        coef[col[name]] += c
            if np.any(coef[:n]):
                coef[n] = -1.0
                a_eq.append(list(coef))
                b_eq.append(-const)
            else:
                row = np.zeros(n + 1)
                row[n] = -1.0
                a_ub.append(list(row))
                b_ub.append(-const)
        for op in stretchy:
            row = np.zeros(n + 1)
            for name, c in op.payload:
                row[col[name]] -= c
            a_ub.append(list(row))
            b_ub.append(op.params[0])
        if fixed_s is not None:
            row = np.zeros(n + 1)
            row[n] = 1.0
            a_eq.append(list(row))
            b_eq.append(fixed_s)
        cost = np.zeros(n + 1)
        cost[n] = 1.0
        result = linprog(
            cost,
            A_ub=np.array(a_ub) if a_ub else None,
            b_ub=np.array(b_ub) if b_ub else None,
            A_eq=np.array(a_eq) if a_eq else None,
            b_eq=np.array(b_eq) if b_eq else None,
            bounds=[(0, None)] * (n + 1),
            method="highs",
        )
        if result.status != 0:
            raise QasmError(
                f"the stretches {', '.join(names)} cannot be solved: the qubits cannot be "
                "aligned with non-negative delays"
                + (f" within the box's {fixed_s:g} s" if fixed_s is not None else "")
            )
        values = {name: float(result.x[col[name]]) for name in names}
        out = []
        for op in section:
            if op.name == "delay" and op.payload:
                seconds = op.params[0] + sum(c * values[name] for name, c in op.payload)
                out.append(
                    Operation(
                        "delay",
                        op.qubits,
                        (max(seconds, 0.0),),
                        line=op.line,
                        condition=op.condition,
                    )
                )
            else:
                out.append(op)
        return out


def _clbits(ops: list[Operation]) -> int:
    return 1 + max((c for op in ops for c in op.clbits if c >= 0), default=-1)
