"""The suspender's logic on virtual time: it trips on a recovery, an alarm, a safe state or a
daemon that does not answer, and resumes only after the lab has been well for `settle_s`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from qcodes.dataset import initialise_or_create_database_at, load_by_id
from qcodes.parameters import Parameter

from ionpilot.core.clock import ManualClock
from ionpilot.experiments.scan import Suspender, scan


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


def test_a_point_measured_while_the_lab_fell_ill_is_redone_once(tmp_path: Path) -> None:
    initialise_or_create_database_at(tmp_path / "scan.db")
    clock = ManualClock()
    unwell: dict[str, Any] = {}
    status = {**WELL}
    setpoint = Parameter("bias", unit="V", set_cmd=None, initial_value=0.0)
    taken: list[float] = []

    def read() -> float:
        taken.append(setpoint.cache.get())
        if len(taken) == 3:  # the ion is lost while point 2 is measured
            status.update(recovering="ion_loss")
            unwell["since"] = clock.now()
        return 10.0 * setpoint.cache.get()

    def status_now() -> dict[str, Any]:
        if "since" in unwell and clock.now() - unwell["since"] >= 40.0:
            status.update(recovering="")  # the daemon has reloaded the ion
        return dict(status)

    signal = Parameter("signal", unit="counts", get_cmd=read, set_cmd=False)
    suspender = Suspender(status_now, settle_s=2.0, poll_s=1.0, clock=clock, sleep=clock.advance)
    result = scan(setpoint, [0.0, 1.0, 2.0, 3.0], [signal], suspender, name="virtual")
    data = result.dataset.get_parameter_data()["signal"]
    assert list(data["bias"]) == [0.0, 1.0, 2.0, 3.0]
    assert list(data["signal"]) == [0.0, 10.0, 20.0, 30.0]
    assert taken == [0.0, 1.0, 2.0, 2.0, 3.0]
    pauses = json.loads(result.dataset.metadata["ionpilot_pauses"])
    assert [(p["point"], p["discarded"]) for p in pauses] == [(2, True)]
    assert pauses[0]["waited_s"] == pytest.approx(42.0)


def test_a_scan_whose_lab_never_recovers_keeps_its_points_and_says_why(tmp_path: Path) -> None:
    initialise_or_create_database_at(tmp_path / "scan.db")
    clock = ManualClock()
    status = {**WELL}
    setpoint = Parameter("bias", unit="V", set_cmd=None, initial_value=0.0)

    def read() -> float:
        if setpoint.cache.get() == 1.0:
            status.update(alarm=True, health="MAJOR")  # and it stays so
        return 1.0

    signal = Parameter("signal", unit="counts", get_cmd=read, set_cmd=False)
    suspender = Suspender(lambda: status, timeout_s=60.0, clock=clock, sleep=clock.advance)
    with pytest.raises(TimeoutError):
        scan(setpoint, [0.0, 1.0, 2.0], [signal], suspender, name="never")
    stored = load_by_id(1)
    assert list(stored.get_parameter_data()["signal"]["bias"]) == [0.0]
    pauses = json.loads(stored.metadata["ionpilot_pauses"])
    assert pauses[0]["point"] == 1 and "never cleared" in pauses[0]["reason"]
