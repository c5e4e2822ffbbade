"""Shot-by-shot execution of OpenQASM programs no pulse schedule can hold, on the simulator.

A loop that repeats until a measurement says so (repeat-until-success) has no fixed length: the
front end unrolls it into the pulse schedule up to `QasmLimits.measured_while_iterations` and
cuts off (and reports) the shots still looping; where truncation is off, or a program needs a
condition over more measurement results than a register can hold, no schedule is made. For the
simulator such programs are walked once per shot by the same front end,
with every measurement sampled on the spot, so each classical value is known when it is
used. The quantum state evolves gate by gate (the library gates' exact matrices); the device's
preparation and readout errors apply unless `ideal`, its pulse-level errors (over-rotation,
detuning, dephasing) do not, because no pulses are made. The trap refuses these programs.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import numpy as np
from openqasm3 import ast

from ionpilot.sequencer.circuit import Operation
from ionpilot.sequencer.errors import QasmError, SequencerError
from ionpilot.sequencer.gates import CArray, apply_matrix, gate_matrix
from ionpilot.sequencer.qasm_program import ProgramFrontend, QasmLimits, _Env
from ionpilot.sequencer.results import result_json
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.simulator import MAX_QUBITS


class _LiveFrontend(ProgramFrontend):
    """The program walker with a state vector behind it: gates act at once, measurements are
    sampled and return plain bits."""

    def __init__(
        self,
        device: DeviceSettings,
        limits: QasmLimits,
        inferred: set[str],
        rng: np.random.Generator,
        *,
        ideal: bool,
        version2: bool,
    ) -> None:
        super().__init__(version2, device, limits, inferred)
        self.rng = rng
        em = device.error_model
        self.readout = (0.0, 0.0) if ideal else (em.readout_error_dark, em.readout_error_bright)
        self.prep = 0.0 if ideal else em.prep_error
        self.n = 0
        self.state: CArray = np.ones((1, 1), dtype=np.complex128)

    def _grow(self, qubits: tuple[int, ...]) -> None:
        need = max(qubits, default=-1) + 1
        if need > MAX_QUBITS:
            raise QasmError(f"shot-by-shot simulation holds at most {MAX_QUBITS} qubits")
        while self.n < need:
            fresh = np.zeros((2, 1), dtype=np.complex128)
            fresh[int(self.rng.random() < self.prep), 0] = 1.0
            grown: CArray = np.kron(fresh, self.state).astype(np.complex128)
            self.state = grown  # the new qubit is the most significant
            self.n += 1

    def emit(self, ops: list[Operation], node: Any) -> None:
        for op in ops:
            if op.name in ("barrier", "delay"):
                continue
            self._grow(op.qubits)
            if op.name == "reset":
                bit = self._sample(op.qubits[0])
                if bit:
                    self.state = apply_matrix(self.state, gate_matrix("x", ()), op.qubits, self.n)
                if self.prep and self.rng.random() < self.prep:
                    self.state = apply_matrix(self.state, gate_matrix("x", ()), op.qubits, self.n)
            elif op.name == "cal":
                raise QasmError("calibrated pulses need a pulse schedule", op.line or None, 1)
            elif op.name != "measure":
                matrix = gate_matrix(op.name, op.params)
                self.state = apply_matrix(self.state, matrix, op.qubits, self.n)

    def _sample(self, q: int) -> int:
        v = self.state.reshape(2 ** (self.n - 1 - q), 2, 2**q)
        p1 = float(np.sum(np.abs(v[:, 1, :]) ** 2))
        bit = int(self.rng.random() < p1)
        v = v.copy()
        v[:, 1 - bit, :] = 0
        self.state = (v / math.sqrt(p1 if bit else 1 - p1)).reshape(-1, 1)
        return bit

    def measure_expr(self, m: ast.QuantumMeasurement, env: _Env, node: Any) -> Any:
        qubits = self.qubit_expr(m.qubit, env)
        self._grow(tuple(qubits))
        bits = []
        for q in qubits:
            bit = self._sample(q)
            err = self.readout[1] if bit else self.readout[0]
            if err and self.rng.random() < err:
                bit = 1 - bit
            bits.append(bit)
        from ionpilot.sequencer.qasm_program import _is_register_operand

        return bits if _is_register_operand(m.qubit, self, env) else bits[0]

    def outcome(self) -> tuple[tuple[int, ...], dict[str, tuple[int, int]]]:
        """The bit registers' values, and each sized integer or angle variable's (width, value)
        (reported where it varies between shots, as the scheduled path reports those that
        depend on measurements)."""
        words = tuple(
            sum((int(b) & 1) << i for i, b in enumerate(self.globals.vars[name].value))
            for name, _ in self.creg_order
        )
        extras = {
            name: (var.width, int(var.value) % (1 << var.width))
            for name, var in self.globals.vars.items()
            if var.kind in ("int", "uint", "angle") and var.width and not var.const
        }
        return words, extras


def run_shot_by_shot(
    program: ast.Program,
    inferred: set[str],
    device: DeviceSettings,
    *,
    shots: int,
    seed: int | None,
    ideal: bool,
    limits: QasmLimits,
) -> dict[str, Any]:
    """Walk `program` once per shot on a state vector; the result document of `run_program`."""
    if shots < 1:
        raise SequencerError("shots must be at least 1")
    rng = np.random.default_rng(seed)
    version2 = (program.version or "3").strip().startswith("2")
    outcomes: Counter[tuple[tuple[int, ...], tuple[tuple[str, int, int], ...]]] = Counter()
    started = time.process_time()
    walker: _LiveFrontend | None = None
    for _ in range(shots):
        walker = _LiveFrontend(device, limits, inferred, rng, ideal=ideal, version2=version2)
        for stmt in program.statements:
            walker.stmt(stmt, walker.globals)
        words, extras = walker.outcome()
        outcomes[(words, tuple((k, w, v) for k, (w, v) in extras.items()))] += 1
    assert walker is not None
    regs = list(walker.creg_order)
    seen: dict[str, set[int]] = {}
    for _, extras_seen in outcomes:
        for name, _, value in extras_seen:
            seen.setdefault(name, set()).add(value)
    varying = [name for name, values in seen.items() if len(values) > 1]
    counts: Counter[int] = Counter()
    for (words, extras_seen), n in outcomes.items():
        word, offset = 0, 0
        for (_, size), value in zip(walker.creg_order, words, strict=True):
            word |= value << offset
            offset += size
        for name, width, value in extras_seen:
            if name in varying:
                word |= value << offset
                offset += width
        counts[word] += n
    for name, width, _ in next(iter(outcomes))[1]:
        if name in varying:
            regs.append((name, width))
    total = sum(size for _, size in regs)
    return result_json(
        dict(counts),
        {k: v / shots for k, v in counts.items()},
        shots,
        regs,
        total,
        exact=False,
        extra={
            "backend": "sim",
            "seed": seed,
            "compile": {
                "mode": "shot by shot, gate level (no pulse schedule: see sequencer/shots.py)",
                "source_counts": {},
                "native_counts": {},
                "two_qubit_count": 0,
                "estimated_duration_s": 0.0,
                "compile_time_s": time.process_time() - started,
                "num_qubits": walker.n,
            },
        },
    )
