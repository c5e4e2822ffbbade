"""A fluorescence count as the sequencer takes it: from someone holding no lease, user jobs
(held with the others during a recovery), each within one user slice of the controller; with the
lease of a loan of the clock laser or the trap, one clock job carrying the token. A fake
sequencer in process stands in for the service (what it is sent is what is checked)."""

from __future__ import annotations

import itertools
from typing import Any

from ionpilot.experiments.pulses import USER_COUNT_JOB_S, count_per_ion
from ionpilot.sequencer.clock import PRESENCE_WINDOW, presence_schedule
from ionpilot.sequencer.settings import DeviceSettings

DEVICE = DeviceSettings()


class FakeSequencer:
    """Answers `submit` and `get name=job` as the service does; 7 counts a shot on one pixel."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []
        self._ids = itertools.count()

    def call(self, target: str, method: str, args: dict[str, Any], **_: Any) -> Any:
        assert target == "sequencer"
        if method == "call":
            assert args["name"] == "submit"
            self.submitted.append(args)
            return {"id": f"job{next(self._ids)}"}
        job = self.submitted[int(args["id"][3:])]
        shots = job["shots"]
        result = {"windows": ["cool", PRESENCE_WINDOW], "counts": [[0, 7]] * shots}
        return {"state": "done", "result": result}


def test_a_count_without_a_lease_is_user_jobs_within_a_slice_each() -> None:
    sequencer = FakeSequencer()
    window_s = 0.01
    rates = count_per_ion(sequencer, DEVICE, window_s, 300)  # type: ignore[arg-type]
    schedule = presence_schedule(DEVICE, window_s)
    shot_s = schedule.duration_mu * schedule.time_unit_s
    assert {job["kind"] for job in sequencer.submitted} == {"user"}
    assert all("lease" not in job for job in sequencer.submitted)
    assert sum(job["shots"] for job in sequencer.submitted) == 300
    assert len(sequencer.submitted) > 1
    assert all(job["shots"] * shot_s <= USER_COUNT_JOB_S for job in sequencer.submitted)
    played_s = schedule.events[0].duration_mu * DEVICE.time_unit
    assert rates == [7 / played_s]


def test_a_count_with_a_lease_is_one_clock_job_of_the_borrowers() -> None:
    sequencer = FakeSequencer()
    count_per_ion(sequencer, DEVICE, 0.01, 300, lease="f" * 32)  # type: ignore[arg-type]
    [job] = sequencer.submitted
    assert (job["kind"], job["shots"], job["lease"]) == ("clock", 300, "f" * 32)
