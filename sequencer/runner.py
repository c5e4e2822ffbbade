"""One call from program to results: parse, compile, schedule, validate, run, report."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ionpilot.sequencer.backends import Backend, get_backend
from ionpilot.sequencer.circuit import Circuit
from ionpilot.sequencer.compiler import CompileReport, NativeCircuit, compile_circuit
from ionpilot.sequencer.device import device_snapshot
from ionpilot.sequencer.errors import QasmError
from ionpilot.sequencer.jobs import Job
from ionpilot.sequencer.qasm import parse_qasm, read_program
from ionpilot.sequencer.qasm_program import NeedsShotByShot, QasmLimits
from ionpilot.sequencer.results import result_json, wilson_interval
from ionpilot.sequencer.schedule import Schedule, build_schedule, validate_schedule
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.shots import run_shot_by_shot
from ionpilot.sequencer.simulator import MAX_QUBITS, SimulatedChain
from ionpilot.sequencer.trap import TrapBackend


@dataclass
class CompiledProgram:
    """A program ready for a backend: native circuit, validated schedule, compile report."""

    circuit: Circuit
    native: NativeCircuit
    schedule: Schedule
    report: CompileReport


def with_measurements(circuit: Circuit) -> Circuit:
    """The circuit itself if it measures anything, else a copy that measures every qubit."""
    if any(op.name == "measure" for op in circuit.ops):
        return circuit
    out = copy.deepcopy(circuit)
    out.measure_all()
    return out


def compile_program(circuit: Circuit, device: DeviceSettings) -> CompiledProgram:
    """Compile and schedule `circuit` for `device`; the schedule is validated before returning."""
    circuit = with_measurements(circuit)
    native, report = compile_circuit(circuit)
    schedule = build_schedule(native, device)
    validate_schedule(schedule, device)
    report.estimated_duration_s = schedule.duration_mu * schedule.time_unit_s
    return CompiledProgram(circuit, native, schedule, report)


def run_program(
    program: CompiledProgram,
    backend: Backend,
    device: DeviceSettings,
    shots: int = 1000,
    seed: int | None = None,
) -> dict[str, Any]:
    """Run a compiled program and return the result document."""
    validate_schedule(program.schedule, device)
    sim = backend.run(program.schedule, shots, seed)
    counts, probabilities = sim.counts, sim.probabilities
    num_bits = program.schedule.num_clbits
    cut = truncated(program.circuit.truncations, probabilities, sim.shots, exact=sim.exact)
    if program.circuit.outputs is not None:
        counts = remap_records(counts, program.circuit.outputs)
        probabilities = remap_records(probabilities, program.circuit.outputs)
        num_bits = len(program.circuit.outputs)
    return result_json(
        counts,
        probabilities,
        sim.shots,
        program.schedule.cregs,
        num_bits,
        exact=sim.exact,
        extra={
            "backend": backend.name,
            "seed": seed,
            "compile": program.report.to_json(),
            "device": device_snapshot(device),
            **({"truncated": cut} if cut else {}),
        },
    )


def truncated(
    truncations: list[Any], probabilities: dict[int, float], shots: int, *, exact: bool
) -> list[dict[str, Any]]:
    """For each while loop on measurement results cut off at its bound: where, the bound, and
    the share of shots (the probability mass) still looping there, from the records; from
    sampled shots also how many were cut off and the share's 95 % upper bound (none cut off
    in 2,000 shots still allows 0.19 %)."""
    out = []
    for line, bound, (records, table) in truncations:
        share = 0.0
        for key, p in probabilities.items():
            index = 0
            for pos, r in enumerate(records):
                index |= ((key >> r) & 1) << pos
            if table[index]:
                share += p
        entry: dict[str, Any] = {"line": line, "bound": bound, "fraction": share}
        if not exact:
            cut = round(share * shots)
            entry["shots"] = cut
            entry["fraction_upper_95"] = wilson_interval(cut, shots)[1]
        out.append(entry)
    return out


def remap_records(values: dict[int, Any], outputs: list[Any]) -> dict[int, Any]:
    """Counts (or probabilities) keyed by measurement records -> keyed by the result registers'
    bits, each computed from the records as the program's classical code said."""
    out: dict[int, Any] = {}
    for key, v in values.items():
        word = 0
        for j, (records, table) in enumerate(outputs):
            index = 0
            for pos, r in enumerate(records):
                index |= ((key >> r) & 1) << pos
            word |= int(table[index]) << j
        out[word] = out.get(word, 0) + v
    return out


def qasm_limits(backend: str, device: DeviceSettings) -> QasmLimits:
    """What the front end refuses before building anything, for this backend and device."""
    if backend == "sim":
        return QasmLimits(
            max_qubits=MAX_QUBITS,
            qubit_limit_reason=(
                f"more qubits than a state vector of the simulator can hold ({MAX_QUBITS})"
            ),
        )
    return QasmLimits(
        max_qubits=device.ions, qubit_limit_reason=f"the device has {device.ions} ions"
    )


def run_qasm(
    text: str,
    backend: Backend,
    device: DeviceSettings,
    *,
    shots: int = 1000,
    seed: int | None = None,
    name: str = "program",
) -> dict[str, Any]:
    """Parse OpenQASM text and run it (everything is checked before the backend is called)."""
    limits = qasm_limits(backend.name, device)
    try:
        circuit = parse_qasm(text, name=name, device=device, limits=limits)
    except NeedsShotByShot as exc:
        return run_without_schedule(text, exc, backend, device, shots=shots, seed=seed)
    program = compile_program(circuit, device)
    return run_program(program, backend, device, shots, seed)


def run_without_schedule(
    text: str,
    why: NeedsShotByShot,
    backend: Backend,
    device: DeviceSettings,
    *,
    shots: int,
    seed: int | None,
) -> dict[str, Any]:
    """A program no pulse schedule can hold: shot by shot on the simulator, refused elsewhere."""
    if not isinstance(backend, SimulatedChain):
        raise QasmError(
            f"{why.message}; the {backend.name} backend plays pulse schedules only (the "
            "simulator runs such programs shot by shot)",
            why.line,
            why.column,
        )
    program, inferred = read_program(text)
    result = run_shot_by_shot(
        program,
        inferred,
        device,
        shots=shots,
        seed=seed,
        ideal=backend.ideal,
        limits=qasm_limits("sim", device),
    )
    # the same record of the device as a scheduled run's, so results compare alike
    result.setdefault("device", device_snapshot(device))
    return result


def run_schedule(
    schedule: Schedule,
    backend: Backend,
    device: DeviceSettings,
    shots: int = 100,
    seed: int | None = None,
) -> dict[str, Any]:
    """Run a ready-made pulse program (e.g. a clock interrogation) and return the result document."""
    validate_schedule(schedule, device)
    sim = backend.run(schedule, shots, seed)
    return result_json(
        sim.counts,
        sim.probabilities,
        sim.shots,
        schedule.cregs,
        schedule.num_clbits,
        exact=sim.exact,
        extra={"backend": backend.name, "seed": seed, "device": device_snapshot(device)},
    )


def execute_job(
    job: Job,
    device: DeviceSettings,
    ideal: bool = False,
    seed: int | None = None,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """Run one queued job: OpenQASM text, or schedule JSON (clock jobs, and a user's own
    schedule: the controller's windows and counts on the trap), on `backend` when given, else
    on a fresh backend named by the job."""
    if backend is None:
        backend = get_backend(job.backend, device, ideal=ideal)
    schedule = job.kind == "clock" or job.program_format == "schedule"
    if schedule and isinstance(backend, TrapBackend):  # the caller reads the windows
        return backend.play(Schedule.loads(job.program), job.shots)
    if schedule:
        return run_schedule(Schedule.loads(job.program), backend, device, job.shots, seed)
    return run_qasm(job.program, backend, device, shots=job.shots, seed=seed, name=job.job_id)
