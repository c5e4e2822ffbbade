"""Pulses for experiments, always through the sequencer: schedules built with its program
builders (`Schedule`, `PulseEvent`) and OpenQASM programs, submitted to the sequencer service's
queue (validated there against the device, run on the trap's pulse controller). A photon count
is the daemon's own presence check (`sequencer.clock.presence_schedule`).

A schedule is a clock job only for the borrower of the clock laser or the trap (the loan's
`lease` token: clock jobs run while user jobs are held, since the lock holds over for the
borrower); anyone else's schedule, a fluorescence count included, is a user job: held during a
recovery (the recovery owns the trap then, and a count would measure its reload, not the scan),
queued at user priority, so it never takes the servo's share of the controller.

A count is its own run, with its own window, played after the set that precedes it has been
applied: nothing of it is shared with the daemon (the pulser's `count_duration` is).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ionpilot.bus.codec import BusError, ErrorCode
from ionpilot.sequencer.clock import PRESENCE_WINDOW, presence_schedule
from ionpilot.sequencer.schedule import PulseEvent, Schedule, validate_schedule
from ionpilot.sequencer.settings import DeviceSettings

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = [
    "JobFailed",
    "SequencerJobs",
    "clock_probe",
    "count_fluorescence",
    "count_per_ion",
    "excitation",
]

FINISHED = ("done", "failed", "cancelled")
USER_COUNT_JOB_S = 1.0  # a count as user jobs: each within the service's user slice (2 s)


class JobFailed(RuntimeError):
    """A sequencer job that did not finish with a result (its state and error)."""


@dataclass
class SequencerJobs:
    """Submit to the lab's sequencer service and wait for the result."""

    lab: Lab
    client: str = "experiment"
    poll_s: float = 0.02
    timeout_s: float = 300.0
    sleep: Callable[[float], None] = time.sleep

    def run_schedule(
        self, schedule: Schedule, shots: int, lease: str | None = None
    ) -> dict[str, Any]:
        """A pulse schedule; the controller's reply (`windows`, per-shot `counts`). With the
        `lease` of a loan of the clock laser or the trap (`ClockLaserLoan.lease`) a clock job,
        run while the lock holds over for the borrower; without, a user job (held while the
        lock is not locked or a recovery runs)."""
        if lease is None:
            return self._run({"kind": "user", "schedule": schedule.dumps(), "shots": shots})
        return self._run(
            {"kind": "clock", "schedule": schedule.dumps(), "shots": shots, "lease": lease}
        )

    def run_qasm(self, program: str, shots: int) -> dict[str, Any]:
        """An OpenQASM program as a user job (held while the daemon recovers the lab)."""
        return self._run({"kind": "user", "qasm": program, "shots": shots})

    def _run(self, args: dict[str, Any]) -> dict[str, Any]:
        reply = self.lab.call(
            "sequencer", "call", {"name": "submit", "client": self.client, **args}, timeout=10.0
        )
        job_id = reply["id"] if isinstance(reply, dict) else None
        if not isinstance(job_id, str):
            raise JobFailed(f"the sequencer gave no job id ({reply!r})"[:300])
        waited = 0.0
        while True:
            job = self.lab.call("sequencer", "get", {"name": "job", "id": job_id}, timeout=10.0)
            state = job.get("state") if isinstance(job, dict) else None
            if state in FINISHED:
                break
            if waited > self.timeout_s:
                self.lab.call("sequencer", "call", {"name": "cancel", "id": job_id})
                raise JobFailed(f"job {job_id} not finished after {self.timeout_s:g} s")
            self.sleep(self.poll_s)
            waited += self.poll_s
        result = job.get("result")
        if state != "done" or not isinstance(result, dict):
            raise JobFailed(f"job {job_id} {state}: {job.get('error') or 'no result'}")
        return result


def excitation(result: dict[str, Any], bit: int = 0) -> float:
    """The fraction of shots whose classical bit `bit` read 1 (the ion excited / dark): from a
    user job's result document (`counts`) or a clock job's controller reply (`outcomes`)."""
    counts = result.get("outcomes", result.get("counts"))
    if not isinstance(counts, dict) or not counts:
        raise JobFailed("a result without counts")
    shots = sum(int(n) for n in counts.values())
    ones = sum(int(n) for key, n in counts.items() if key.replace(" ", "")[::-1][bit] == "1")
    return ones / shots


def clock_probe(
    device: DeviceSettings,
    pulses: list[tuple[float, float, float, float]],
    aom_frequency_hz: float,
) -> Schedule:
    """Cool, pump, the clock pulses [(gap before it s, duration s, amplitude, phase rad)] at
    `aom_frequency_hz`, detect: one ion, one bit (1 = excited). The sequencer's own
    interrogation (`clock_interrogation`) plays only π and π/2 pulses; experiments need any
    area, so they place the same events themselves."""
    unit = device.time_unit
    grid = device.grid_mu

    def mu(seconds: float) -> int:
        n = max(1, round(seconds / unit))
        return max(grid, -(-n // grid) * grid)

    cool, pump = mu(device.cooling_duration), mu(device.pumping_duration)
    events = [
        PulseEvent("cool", device.cooling_channel, 0, cool, kind="ttl"),
        PulseEvent("prepare", device.pumping_channel, cool, pump, kind="pump", qubits=(0,)),
    ]
    t = cool + pump
    for i, (gap, duration, amplitude, phase) in enumerate(pulses):
        t += mu(gap) if gap > 0 else 0
        length = mu(duration)
        events.append(
            PulseEvent(
                f"probe_{i}",
                device.clock_channel,
                t,
                length,
                amplitude=amplitude,
                frequency_hz=aom_frequency_hz,
                phase_rad=phase,
                frames=("clock",),
            )
        )
        t += length
    detect = mu(device.detection_duration)
    events.append(
        PulseEvent(
            "detect", device.detection_channel, t, detect, kind="detect", qubits=(0,), clbits=(0,)
        )
    )
    return Schedule(1, 1, events, cregs=[("clock", 1)], final_frame=[0.0], time_unit_s=unit)


def count_fluorescence(
    lab: Lab, device: DeviceSettings, window_s: float, shots: int, lease: str | None = None
) -> float:
    """Cooling fluorescence (counts per second, all ions): `shots` cooling windows of
    `window_s`, built by the sequencer and played through its queue (the pulse controller is
    the queue's: nothing reaches it past the sequencer): a user job, or with the `lease` of a
    loan of the clock laser or the trap, a clock job of the borrower's."""
    return sum(count_per_ion(lab, device, window_s, shots, lease))


def count_per_ion(
    lab: Lab, device: DeviceSettings, window_s: float, shots: int, lease: str | None = None
) -> list[float]:
    """Cooling fluorescence (counts per second) on each ion's own pixel (one entry for a
    detector that counts the whole chain), played as `count_fluorescence` plays it."""
    # the daemon's own presence check (one counting cooling pulse), here over `shots` shots
    schedule = presence_schedule(device, window_s)
    validate_schedule(schedule, device)
    played_s = schedule.events[0].duration_mu * device.time_unit  # the window on the grid
    shot_s = schedule.duration_mu * schedule.time_unit_s
    # a user job plays in one controller call of at most one user slice: several jobs then
    per_job = shots if lease is not None else max(1, int(USER_COUNT_JOB_S / shot_s))
    jobs = SequencerJobs(lab)
    counts: list[Any] = []
    windows: Any = None
    for first in range(0, shots, per_job):
        reply = jobs.run_schedule(schedule, min(per_job, shots - first), lease)
        windows, part = reply.get("windows"), reply.get("counts")
        if not isinstance(part, list):
            raise BusError(ErrorCode.BAD_REQUEST, "the sequencer's reply has no counts")
        counts += part
    if len(counts) != shots:
        raise BusError(ErrorCode.BAD_REQUEST, f"the sequencer ran no {shots} shots of counts")
    if not isinstance(windows, list) or PRESENCE_WINDOW not in windows:
        raise BusError(ErrorCode.BAD_REQUEST, f"the sequencer's reply has no {PRESENCE_WINDOW!r}")
    at = windows.index(PRESENCE_WINDOW)
    totals: list[int] = []
    for shot in counts:
        window = shot[at] if isinstance(shot, list) and len(shot) > at else None
        pixels = window if isinstance(window, list) else [window]  # per ion, or the chain's sum
        if not pixels or any(not isinstance(n, int) or isinstance(n, bool) for n in pixels):
            raise BusError(ErrorCode.BAD_REQUEST, f"a shot without a fluorescence count: {shot!r}")
        if not totals:
            totals = [0] * len(pixels)
        if len(pixels) != len(totals):
            raise BusError(ErrorCode.BAD_REQUEST, f"shots count different pixels: {shot!r}")
        totals = [t + int(n) for t, n in zip(totals, pixels, strict=True)]
    return [t / (shots * played_s) for t in totals]
