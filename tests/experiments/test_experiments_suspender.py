"""The suspender's logic on virtual time: it trips on a recovery, an alarm, a safe state or a
daemon that does not answer, and resumes only after the lab has been well for `settle_s`."""

from __future__ import annotations

from typing import Any

import pytest

from ionpilot.core.clock import ManualClock
from ionpilot.experiments.scan import Suspender


def script(clock: ManualClock, timeline: list[tuple[float, dict[str, Any]]]) -> Any:
    """A daemon status that follows `timeline` [(from_s, status), ...] on `clock`."""

    def read() -> dict[str, Any]:
        now = clock.now()
        return [s for t, s in timeline if t <= now][-1]

    return read


WELL = {"recovering": "", "alarm": False, "health": "OK", "safe_state": False}


def test_trip_reasons() -> None:
    clock = ManualClock()
    for status, words in [
        ({**WELL, "recovering": "ion_loss"}, "ion_loss"),
        ({**WELL, "alarm": True, "health": "MAJOR"}, "MAJOR"),
        ({**WELL, "safe_state": True}, "safe"),
        ({"unreachable": "daemon: timeout"}, "unreachable"),
    ]:
        suspender = Suspender(lambda s=status: s, clock=clock, sleep=clock.advance)  # type: ignore[misc]
        assert words in suspender.tripped()
    assert Suspender(lambda: WELL, clock=clock, sleep=clock.advance).tripped() == ""


def test_resume_needs_the_lab_well_for_the_settle_time() -> None:
    clock = ManualClock()
    flapping = script(
        clock,
        [
            (0.0, {**WELL, "recovering": "ion_loss"}),
            (10.0, WELL),  # well for 1 s only
            (11.0, {**WELL, "alarm": True, "health": "MAJOR"}),
            (20.0, WELL),
        ],
    )
    suspender = Suspender(flapping, settle_s=3.0, poll_s=0.5, clock=clock, sleep=clock.advance)
    waited = suspender.wait_until_clear()
    assert waited == pytest.approx(23.0)


def test_a_lab_that_never_recovers_ends_the_wait() -> None:
    clock = ManualClock()
    down = Suspender(
        lambda: {"unreachable": "daemon: timeout"},
        timeout_s=30.0,
        clock=clock,
        sleep=clock.advance,
    )
    with pytest.raises(TimeoutError, match="30 s"):
        down.wait_until_clear()
