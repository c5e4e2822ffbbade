"""What the processor is doing now, as the device description reports it: `idle`, `busy`,
`calibration`, `maintenance`, or `offline` when the lab does not answer (`unknown` when no lab
was asked). Read from the bus only: the servo daemon's `status` (a recovery running, the safe
state) and the sequencer service's `list` of user jobs (queued, running, held); the calibration
record says whether a calibration is due. Nothing here invents a state the lab did not report.

The same state in the forms a compiler reads: QDMI's device status (`QDMI_DEVICE_STATUS_*`) and
Braket's `deviceStatus` (`ONLINE`/`OFFLINE`; Braket has no busy or calibration states: those are
ONLINE, with the queue's size in `deviceQueueInfo` as a Braket GetDevice reply gives it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ionpilot.bus.codec import BusError

State = Literal["idle", "busy", "calibration", "maintenance", "offline", "unknown"]
STATES: tuple[State, ...] = ("idle", "busy", "calibration", "maintenance", "offline", "unknown")
# a bus request to one process: (process, method, args) -> its reply; raises BusError or OSError
Ask = Callable[[str, str, dict[str, Any]], Any]
MAX_LISTED_JOBS = 1000  # the sequencer's own cap on one `list` reply


@dataclass(frozen=True)
class DeviceStatus:
    """The device's state, why, and how many user jobs wait or run."""

    state: State
    reason: str
    queued_jobs: int | None = None
    running_jobs: int | None = None

    def qdmi(self) -> str | None:
        """QDMI's device status name (None for `unknown`: QDMI has no such status)."""
        return None if self.state == "unknown" else f"QDMI_DEVICE_STATUS_{self.state.upper()}"

    def braket(self) -> dict[str, Any]:
        """Braket's form, as in a GetDevice reply: `deviceStatus` and the queue's size."""
        status = {"unknown": None, "offline": "OFFLINE"}.get(self.state, "ONLINE")
        queue: list[dict[str, str]] = []
        if self.queued_jobs is not None:
            queue.append(
                {
                    "queue": "QUANTUM_TASKS_QUEUE",
                    "queueSize": str(self.queued_jobs),
                    "queuePriority": "Normal",
                }
            )
        return {"deviceStatus": status, "deviceQueueInfo": queue}

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "queuedJobs": self.queued_jobs,
            "runningJobs": self.running_jobs,
            "qdmi": self.qdmi(),
            "braket": self.braket(),
        }


def not_asked(reason: str) -> DeviceStatus:
    """No lab was asked (the built-in device, or the caller chose not to)."""
    return DeviceStatus("unknown", reason)


def status_from_replies(
    daemon: dict[str, Any], jobs: dict[str, Any], due: Sequence[str] = ()
) -> DeviceStatus:
    """The state from the daemon's `status`, the sequencer's `list kind=user` reply and the
    calibrations that are due, in this order: a recovery or the safe state or held user jobs
    make `maintenance`; a calibration due makes `calibration`; a user job queued or running
    makes `busy`; else `idle`. Clock interrogations (kind `clock`) are the servo's own
    background work and do not make the device busy."""
    listed = jobs.get("jobs")
    listed = listed if isinstance(listed, list) else []
    queued = sum(1 for j in listed if isinstance(j, dict) and j.get("state") == "queued")
    running = sum(1 for j in listed if isinstance(j, dict) and j.get("state") == "running")

    def make(state: State, reason: str) -> DeviceStatus:
        return DeviceStatus(state, reason, queued, running)

    if daemon.get("safe_state") is True:
        return make(
            "maintenance", "the daemon holds the lab in its safe state (an operator ends it)"
        )
    recovering = daemon.get("recovering")
    if isinstance(recovering, str) and recovering:
        return make("maintenance", f"recovery running: {recovering}")
    if jobs.get("held") is True:
        by = jobs.get("held_by") or "unknown"
        return make("maintenance", f"user jobs held by {by}: {jobs.get('hold_reason') or ''}")
    if due:
        return make("calibration", f"calibration due: {', '.join(due)} older than valid")
    if running or queued:
        return make("busy", f"{running} user job(s) running, {queued} queued")
    return make("idle", "no user job queued or running")


def read_device_status(ask: Ask, due: Sequence[str] = ()) -> DeviceStatus:
    """Ask the daemon and the sequencer service; `offline` (naming who did not answer and why)
    when either is silent or refuses, since then no job can run."""
    replies: dict[str, dict[str, Any]] = {}
    for process, method, args in (
        ("daemon", "status", {}),
        (
            "sequencer",
            "list",
            {"kind": "user", "state": ["queued", "running"], "limit": MAX_LISTED_JOBS},
        ),
    ):
        try:
            reply = ask(process, method, args)
        except (BusError, OSError, TimeoutError) as exc:
            return DeviceStatus("offline", f"the {process} did not answer: {exc}")
        if not isinstance(reply, dict):
            return DeviceStatus("offline", f"the {process} answered {reply!r}"[:200])
        replies[process] = reply
    return status_from_replies(replies["daemon"], replies["sequencer"], due)
