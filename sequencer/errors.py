"""Errors of the sequencer. Each says precisely what is wrong and where, so a user can fix the
program or the schedule; none is raised after anything has been sent to hardware."""

from __future__ import annotations


class SequencerError(Exception):
    """Base class: anything the sequencer refuses."""


class QasmError(SequencerError):
    """An OpenQASM program that cannot be run: syntax, undefined names, arity, ranges, constructs."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")


class CircuitError(SequencerError):
    """A circuit built through the Python API that is inconsistent (bad qubit, wrong arity)."""


class ScheduleError(SequencerError):
    """A pulse schedule that violates the device's limits; `problems` name the offending events."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        text = "; ".join(f"event '{name}': {what}" for name, what in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"invalid schedule: {text}{more}")

    @property
    def event_names(self) -> list[str]:
        """Names of the offending events, in the order found."""
        return [name for name, _ in self.problems]


class TrapTranslationError(SequencerError):
    """A valid schedule the trap's pulse controller cannot play; `problems` name the events."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        text = "; ".join(f"event '{name}': {what}" for name, what in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"the pulse controller cannot play this schedule: {text}{more}")


class BackendUnavailable(SequencerError):
    """The requested backend cannot run now (e.g. the trap's pulse controller is not on the bus)."""


class JobError(SequencerError):
    """A job-queue request that was refused (unknown job, wrong state, queue full)."""
