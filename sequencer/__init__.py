"""The sequencer: OpenQASM 3/2 or Python circuits -> native ion gates -> validated pulse
schedules -> a backend (the simulated ion chain, or the trap's pulse controller on the bus) ->
results with uncertainties; plus the device description, the job queue and its bus service."""

from ionpilot.sequencer.backends import Backend, get_backend
from ionpilot.sequencer.circuit import Circuit, Operation
from ionpilot.sequencer.compiler import CompileReport, NativeCircuit, NativeOp, compile_circuit
from ionpilot.sequencer.device import describe_device, device_snapshot
from ionpilot.sequencer.errors import (
    BackendUnavailable,
    CircuitError,
    JobError,
    QasmError,
    ScheduleError,
    SequencerError,
    TrapTranslationError,
)
from ionpilot.sequencer.jobs import AuditRecord, Job, JobQueue
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.runner import (
    CompiledProgram,
    compile_program,
    execute_job,
    run_program,
    run_qasm,
    run_schedule,
)
from ionpilot.sequencer.schedule import (
    PulseEvent,
    Schedule,
    build_schedule,
    clock_interrogation,
    native_defcals,
    validate_schedule,
)
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.simulator import SimulatedChain
from ionpilot.sequencer.trap import BusPulserLink, TrapBackend, translate_schedule

__all__ = [
    "AuditRecord",
    "Backend",
    "BackendUnavailable",
    "BusPulserLink",
    "Circuit",
    "CircuitError",
    "CompileReport",
    "CompiledProgram",
    "DeviceSettings",
    "Job",
    "JobError",
    "JobQueue",
    "NativeCircuit",
    "NativeOp",
    "Operation",
    "PulseEvent",
    "QasmError",
    "Schedule",
    "ScheduleError",
    "SequencerError",
    "SimulatedChain",
    "TrapBackend",
    "TrapTranslationError",
    "build_schedule",
    "clock_interrogation",
    "compile_circuit",
    "compile_program",
    "describe_device",
    "device_snapshot",
    "execute_job",
    "get_backend",
    "native_defcals",
    "parse_qasm",
    "run_program",
    "run_qasm",
    "run_schedule",
    "translate_schedule",
    "validate_schedule",
]
