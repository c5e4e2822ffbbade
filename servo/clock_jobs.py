"""The live daemon's interrogations as clock jobs in the sequencer service's queue.

Every run of an interrogation (at most `ion_check_interval` of shots) is one `run_clock` call:
the sequencer's clock program with the frequency in it, which the service validates, translates
and plays on the pulse controller between user jobs (its share policy keeps the servo's minimum
interrogation rate), answering with the controller's raw reply once the run is over. Each call
also tells the service the lock's state and the laser's fractional offset, which it writes into
every user job's result. The fluorescence check is such a job too (a counting cooling pulse), so
the daemon writes nothing to the pulser itself.

Every wait is bounded: a call waits for its run's own budget plus `QUEUE_WAIT_S` (a user job's
slice and the service's grace, with margin). A sequencer that is down or stuck is a `LabError`
naming it, which pauses the lock and leaves the rest to the recovery engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ionpilot.bus.codec import BusError, ErrorCode
from ionpilot.sequencer.clock import PRESENCE_WINDOW, ClockProgram, presence_schedule
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.clock_shots import ClockShots
from ionpilot.servo.seams import LabError
from ionpilot.servo.settings import PulseCalibration

Call = Callable[..., Any]
Context = Callable[[], dict[str, Any]]  # what each clock job reports about the lock
QUEUE_WAIT_S = 10.0  # longest a clock job may wait in the queue (a user slice, the grace)
SEQUENCER = "sequencer"


def _no_pulser(shots: int, pulses: list[dict[str, Any]], timeout_s: float) -> Any:
    raise LabError("the live daemon plays nothing on the pulser itself")  # see `play`


class QueuedClockShots(ClockShots):
    """Clock interrogations as clock jobs through the sequencer service (`call`: the bus)."""

    def __init__(
        self,
        call: Call,
        pulses: PulseCalibration,
        device: DeviceSettings | None = None,
        pulser: str = "pulser",
        sequencer: str = SEQUENCER,
    ) -> None:
        super().__init__(_no_pulser, pulses, device, pulser)
        self._call = call
        self.sequencer = sequencer
        self.context: Context = dict  # set by the daemon: lock state, fractional offset
        self.jobs_run = 0  # clock jobs this daemon had played

    def play(
        self,
        program: ClockProgram,
        aom_frequency_hz: float,
        pulses: list[dict[str, Any]],
        shots: int,
        timeout_s: float,
    ) -> Any:
        """One run as a clock job carrying the schedule at this frequency."""
        schedule = program.schedule_at(aom_frequency_hz).dumps()
        return self.run_job(schedule, shots, timeout_s)

    def run_job(self, schedule: str, shots: int, timeout_s: float) -> dict[str, Any]:
        """Run `schedule` as a clock job; the controller's reply (LabError if none came)."""
        args = {"name": "run_clock", "schedule": schedule, "shots": shots, **self.context()}
        wait = timeout_s + QUEUE_WAIT_S
        try:
            reply = self._call(self.sequencer, "call", args, timeout=wait)
        except BusError as exc:
            if exc.code == ErrorCode.TIMEOUT:
                raise LabError(
                    f"no clock job result from the {self.sequencer} service within {wait:.1f} s "
                    f"(is it running?): {exc.message}"
                ) from exc
            raise LabError(f"clock job on the {self.sequencer} service failed: {exc}") from exc
        if not isinstance(reply, dict):
            raise LabError(f"the {self.sequencer} service returned {reply!r} for a clock job")
        self.jobs_run += 1
        return reply

    def count_photons(self, duration_s: float) -> int:
        """Cooling fluorescence counted for `duration_s` (one shot of a counting cooling pulse,
        a clock job like the interrogations). On a chain, the weakest ion's own pixel: the
        chain fluoresces only if every ion does, as the interrogations' cooling windows judge
        it (`clock_shots`), so one ion lost from five reads as no fluorescence, not as 4/5 of
        the chain's sum (which would clear the ion-loss trip the shots had raised)."""
        schedule = presence_schedule(self.device, duration_s)
        reply = self.run_job(schedule.dumps(), 1, 5.0 + 3.0 * duration_s)
        windows, counts = reply.get("windows"), reply.get("counts")
        if (
            isinstance(windows, list)
            and PRESENCE_WINDOW in windows
            and isinstance(counts, list)
            and len(counts) == 1
            and isinstance(counts[0], list)
            and len(counts[0]) > windows.index(PRESENCE_WINDOW)
        ):
            found = counts[0][windows.index(PRESENCE_WINDOW)]
            per_ion = found if isinstance(found, list) else [found]
            if per_ion and all(type(c) is int for c in per_ion):
                return min(per_ion)
        raise LabError(f"the {self.sequencer} service returned no presence count: {reply!r}"[:300])
