"""Scans that survive faults: a 1-D scan that pauses while the lab is unwell and redoes the
interrupted point when it is back.

The model is Bluesky's suspenders (a trip condition and a separate resume condition, the pause
taken at the next point) with ARTIQ's rule for a lost ion (redo the point, not skip it). What
neither has is a daemon that recovers the lab by itself: here the trip and resume conditions
read the servo daemon's status over the bus (`alarm` = a health signal at MAJOR or worse,
`recovering` = a recovery playbook running), so the scan waits while the daemon reloads the
ion and goes on afterwards.

A point counts only if the lab was well both before it was set and after it was measured;
otherwise it is discarded and measured again once the lab is back: each planned point is in the
dataset exactly once, and every pause (when, why, which point) is in its metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from qcodes.dataset import Measurement, load_or_create_experiment
from qcodes.dataset.data_set_protocol import DataSetProtocol
from qcodes.dataset.experiment_container import Experiment
from qcodes.parameters import ParameterBase
from qcodes.station import Station

from ionpilot.bus.codec import BusError
from ionpilot.core.clock import Clock, SystemClock

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = [
    "Pause",
    "ScanResult",
    "Suspender",
    "daemon_status_reader",
    "outside_in",
    "report_progress_to",
    "scan",
]

Status = Mapping[str, Any]
_default_progress: list[Callable[[int, int], None]] = []  # set by `ionpilot run`


def outside_in(values: Sequence[float]) -> list[float]:
    """`values` in the order first, last, second, second to last, ...: a slow drift of the
    signal (a laser lock's steps, a wandering level) is then spread evenly across the scan
    instead of turning into a slope along it, which would shift a fitted centre."""
    ordered: list[float] = []
    low, high = 0, len(values) - 1
    while low <= high:
        ordered.append(values[low])
        if low != high:
            ordered.append(values[high])
        low, high = low + 1, high - 1
    return ordered


def report_progress_to(reporter: Callable[[int, int], None] | None) -> None:
    """Every scan that is given no `after_point` reports (points done, planned) to `reporter`
    (`ionpilot run` installs its progress line; None removes it)."""
    _default_progress.clear()
    if reporter is not None:
        _default_progress.append(reporter)


def daemon_status_reader(lab: Lab, daemon: str = "daemon") -> Callable[[], Status]:
    """Reads the servo daemon's status; a daemon that does not answer reads as unwell."""

    def read() -> Status:
        try:
            reply = lab.call(daemon, "status", timeout=5.0)
        except BusError as exc:
            return {"unreachable": f"{daemon}: {exc.code}"}
        return reply if isinstance(reply, dict) else {"unreachable": f"{daemon}: no status"}

    return read


def _trip_reason(status: Status) -> str:
    """Why the lab is not fit to measure ('' when it is): daemon unreachable, a recovery
    running, a health alarm at MAJOR or worse, or the daemon in its safe state."""
    if status.get("unreachable"):
        return f"daemon unreachable ({status['unreachable']})"
    if status.get("recovering"):
        return f"recovery {status['recovering']} running"
    if status.get("alarm"):
        return f"health alarm ({status.get('health', 'MAJOR')})"
    if status.get("safe_state"):
        return "daemon in safe state"
    return ""


@dataclass
class Suspender:
    """Trip when the daemon reports an alarm/recovery; resume only when it has reported none for
    `settle_s` (a separate, stricter condition, so a scan does not flap on a recovery's last
    step). `read_status` is the daemon's status (see `daemon_status_reader`); `clock` and
    `sleep` are injectable so the logic runs on virtual time in tests."""

    read_status: Callable[[], Status]
    settle_s: float = 2.0
    poll_s: float = 0.5
    timeout_s: float = 600.0
    clock: Clock = field(default_factory=SystemClock)
    sleep: Callable[[float], None] = time.sleep

    def tripped(self) -> str:
        """Why the scan must pause now ('' when it need not)."""
        return _trip_reason(self.read_status())

    def wait_until_clear(self) -> float:
        """Block until the lab has been well for `settle_s`; the time waited (s). TimeoutError
        after `timeout_s` (the scan then ends with the points it has)."""
        start = self.clock.now()
        well_since: float | None = None
        while True:
            now = self.clock.now()
            if _trip_reason(self.read_status()):
                well_since = None
            elif well_since is None:
                well_since = now
            if well_since is not None and now - well_since >= self.settle_s:
                return now - start
            if now - start > self.timeout_s:
                raise TimeoutError(f"the lab did not recover within {self.timeout_s:g} s")
            self.sleep(self.poll_s)


@dataclass(frozen=True)
class Pause:
    """One pause of a scan: the point it interrupted, why, and how long it waited."""

    point: int
    reason: str
    started_ns: int
    waited_s: float
    discarded: bool  # the point had been measured while the lab was unwell: measured again


@dataclass
class ScanResult:
    dataset: DataSetProtocol
    pauses: list[Pause]
    points: int


def scan(
    sweep: ParameterBase,
    values: Sequence[float],
    measure: Sequence[ParameterBase],
    suspender: Suspender,
    *,
    name: str = "scan",
    after_point: Callable[[int], None] | None = None,
    metadata: Mapping[str, str] | None = None,
    experiment: Experiment | None = None,
) -> ScanResult:
    """Set `sweep` to each of `values`, read `measure`, store each point once in a QCoDeS
    dataset (the default station's snapshot included); pause while `suspender` is tripped and
    redo the interrupted point. `after_point(i)` runs after point i is stored (progress). The
    dataset goes to `experiment`, by default "scans" with the default station's lab as sample."""
    if experiment is None:
        station = Station.default
        about = station.metadata.get("ionpilot", {}) if station is not None else {}
        experiment = load_or_create_experiment("scans", sample_name=str(about.get("lab", "")))
    meas = Measurement(exp=experiment, name=name)
    meas.register_parameter(sweep)
    for param in measure:
        meas.register_parameter(param, setpoints=(sweep,))
    pauses: list[Pause] = []
    if after_point is None and _default_progress:
        reporter, planned = _default_progress[0], len(values)
        after_point = lambda i: reporter(i + 1, planned)  # noqa: E731
    with meas.run() as saver:
        dataset = saver.dataset
        try:
            for index, value in enumerate(values):
                while True:
                    reason = suspender.tripped()
                    discarded = False
                    if not reason:
                        sweep.set(value)
                        readings = [(p, p.get()) for p in measure]
                        reason = suspender.tripped()  # unwell while measuring: point suspect
                        discarded = bool(reason)
                        if not reason:
                            saver.add_result((sweep, value), *readings)
                            break
                    started, t0 = suspender.clock.wall_ns(), suspender.clock.now()
                    try:
                        waited = suspender.wait_until_clear()
                    except TimeoutError:
                        waited = suspender.clock.now() - t0
                        pauses.append(
                            Pause(index, f"{reason}; never cleared", started, waited, discarded)
                        )
                        raise
                    pauses.append(Pause(index, reason, started, waited, discarded))
                if after_point is not None:
                    after_point(index)
        finally:  # kept with the points taken, also when the scan ends early
            dataset.add_metadata("ionpilot_pauses", json.dumps([asdict(p) for p in pauses]))
            dataset.add_metadata("ionpilot_planned_points", len(values))
            for key, text in (metadata or {}).items():
                dataset.add_metadata(key, text)
    return ScanResult(dataset, pauses, len(values))
