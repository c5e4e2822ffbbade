"""The daemon's side of "every pulse through the sequencer": the clock's share of the controller
from the servo's shared time constant (validated), user jobs held while the lock is not `locked`,
and a sequencer that is down or refuses is a LabError naming it, never a hang."""

from __future__ import annotations

from typing import Any

import pytest

from ionpilot.bus.codec import BusError, ErrorCode
from ionpilot.core.clock import ManualClock
from ionpilot.servo.clock_jobs import QUEUE_WAIT_S, QueuedClockShots
from ionpilot.servo.daemon import LOCK_HOLD_RETRY_S, BusLab, LockHold
from ionpilot.servo.interrogation import (
    clock_duty,
    lock_probe,
    min_interrogation_rate_hz,
    servo_time_constant_s,
)
from ionpilot.servo.seams import LabError
from ionpilot.servo.settings import ClockLockSettings, PulseCalibration


def test_the_clock_share_follows_the_shared_time_constant():
    alone = ClockLockSettings()  # 10 probes of 0.1 s a side, gain 0.5: 4 s alone
    assert servo_time_constant_s(alone) == pytest.approx(4.0)
    assert min_interrogation_rate_hz(alone) == pytest.approx(1 / 3)  # default: 3 x 4 s = 12 s
    pulses = PulseCalibration()  # a 0.05 s fluorescence check reserved per interrogation
    assert clock_duty(alone, pulses) == pytest.approx((1 + 0.05) / 3)
    slower = ClockLockSettings(shared_time_constant=20.0)
    assert min_interrogation_rate_hz(slower) == pytest.approx(0.2)
    assert clock_duty(slower, pulses) == pytest.approx(0.2 * 1.05)  # τ_alone / τ_shared, + checks


@pytest.mark.parametrize("tau", [4.0, 2.0, 601.0, -1.0])
def test_a_shared_time_constant_out_of_range_is_refused(tau):
    with pytest.raises(ValueError, match=r"shared_time_constant must be more than .* found"):
        ClockLockSettings(shared_time_constant=tau)


def test_user_jobs_are_held_while_the_lock_is_not_locked():
    clock = ManualClock()
    sent: list[tuple[bool, str]] = []
    up = [False]

    def hook(hold: bool, reason: str) -> bool:
        sent.append((hold, reason))
        return up[0]

    hold = LockHold(hook, clock)
    hold.follow("acquiring", "line search")  # the sequencer is not up yet: not taken
    assert sent == [(True, "clock lock is acquiring (line search)")] and hold.held is None
    hold.follow("acquiring")  # the next beat: too soon to ask again
    assert len(sent) == 1
    clock.advance(LOCK_HOLD_RETRY_S)
    up[0] = True
    hold.follow("acquiring")
    assert len(sent) == 2 and hold.held is True
    for _ in range(5):  # beats while nothing changes: nothing sent
        clock.advance(1.0)
        hold.follow("acquiring")
    assert len(sent) == 2
    hold.follow("locked", "centred")
    assert sent[-1] == (False, "clock lock is locked (centred)") and hold.held is False
    hold.follow("holdover", "no fluorescence")
    assert sent[-1] == (True, "clock lock is holdover (no fluorescence)")


def call_failing(code: str) -> Any:
    def call(target: str, method: str, args: dict[str, Any], timeout: float) -> Any:
        assert (target, method, args["name"]) == ("sequencer", "call", "run_clock")
        assert timeout <= 5.0 + 3 * 20 * 0.1 + QUEUE_WAIT_S  # every wait has a bound
        raise BusError(code, "no reply")

    return call


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (ErrorCode.TIMEOUT, "no clock job result from the sequencer service within"),
        (ErrorCode.INSTRUMENT_ERROR, "clock job on the sequencer service failed"),
        (ErrorCode.BAD_REQUEST, "clock job on the sequencer service failed"),
    ],
)
def test_a_sequencer_that_is_down_or_refuses_is_a_lab_error(code, words):
    shots = QueuedClockShots(call_failing(code), PulseCalibration())
    with pytest.raises(LabError, match=words):
        shots.interrogate(lock_probe(ClockLockSettings()), 80e6, 20)  # default device
    with pytest.raises(LabError, match=words):
        shots.count_photons(0.05)


def test_the_fluorescence_check_reads_the_weakest_ion_of_the_chain():
    """One ion lost from five must read as no fluorescence (as the interrogations' cooling
    windows judge it), not as 4/5 of the chain's sum, which would clear the ion-loss trip."""
    per_ion = [1010, 987, 2, 1003, 995]  # ion 2's pixel: background only

    def call(target: str, method: str, args: dict[str, Any], timeout: float) -> Any:
        assert (target, method, args["name"]) == ("sequencer", "call", "run_clock")
        return {"windows": ["presence"], "counts": [[per_ion]]}

    shots = QueuedClockShots(call, PulseCalibration())
    assert shots.count_photons(0.05) == 2
    per_ion[2] = 1001  # reloaded: the chain is whole
    assert shots.count_photons(0.05) == 987


def test_the_parked_clock_frequency_is_written_to_the_pulser_once_per_move():
    """The servo's actuator: on the optical qubit the gate pulses are the clock light at the
    pulser's resting DDS frequency, so the lock's line estimate must reach it (a set through the
    driver, its limits held), and only when it has moved."""
    sets: list[tuple[str, str, dict[str, Any]]] = []

    def call(target: str, method: str, args: dict[str, Any], timeout: float = 5.0) -> Any:
        sets.append((target, method, args))
        return None

    lab = BusLab(call, ClockLockSettings(), PulseCalibration())
    lab.set_clock_aom_frequency(200_000_012.5)
    lab.set_clock_aom_frequency(200_000_012.5)
    lab.set_clock_aom_frequency(200_000_012.75)
    written = [a["value"] for t, m, a in sets if m == "set" and a["name"] == "dds_frequency"]
    assert written == [200_000_012.5, 200_000_012.75]
    assert all(t == ClockLockSettings().pulser for t, _, _ in sets)
    assert lab.parked_aom_frequency_hz == 200_000_012.75
