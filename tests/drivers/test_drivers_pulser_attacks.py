"""Issue 19, findings 2, 7 and 9: every pulse a pulser plays, from any caller, is held to the
lab file's limits and the hardware range, its run to the driver's duration bound, and a set-point
is a number (a boolean is not). Each refusal sends nothing to the controller."""

import itertools

import pytest
from test_drivers_ionpilot_pulser import DESCRIBE, op  # type: ignore[import-not-found]

from ionpilot.drivers.errors import OutOfLimitsError
from ionpilot.drivers.registry import open_instrument
from ionpilot.drivers.replay import ReplayServer

_names = itertools.count()
LAB_LIMITS = {"dds_frequency": {"min": 150e6, "max": 250e6}}


def _clock(frequency_hz=None, amplitude=1.0, duration_ns=20_000_000):
    pulse = {"t_ns": 0, "duration_ns": duration_ns, "channel": "clock", "amplitude": amplitude}
    if frequency_hz is not None:
        pulse["frequency_hz"] = frequency_hz
    return pulse


def _refused(schedule, shots=1, error=OutOfLimitsError, limits=LAB_LIMITS):
    """The driver refuses the run itself: the replay expects nothing after `describe`."""
    with ReplayServer([op("describe", DESCRIBE)]) as server:
        pulser = open_instrument(
            f"pulser_attack{next(_names)}",
            "ionpilot_pulser",
            f"tcp://127.0.0.1:{server.port}",
            limits,
            timeout_s=2.0,
        )
        try:
            with pytest.raises(error) as caught:
                pulser.run(shots, schedule)
        finally:
            pulser.close()
        assert server.failures == [] and server.remaining == 0
    return str(caught.value)


@pytest.mark.parametrize("frequency_hz", [350e6, 100e6, 2e6, 1e9])
def test_clock_pulses_outside_the_lab_limits_are_refused(frequency_hz):
    text = _refused([_clock(frequency_hz)])
    assert "dds_frequency" in text and "pulse 0" in text


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "200e6"])
def test_pulse_values_that_are_not_numbers_are_refused(bad):
    _refused([_clock(bad)], error=ValueError)
    _refused([_clock(200e6, amplitude=bad)], error=ValueError)


def test_amplitudes_beyond_the_hardware_are_refused():
    _refused([_clock(200e6, amplitude=1.5)])
    raman = {"t_ns": 0, "duration_ns": 10, "channel": "raman", "amplitude": -0.1}
    _refused([raman])


def test_a_run_longer_than_the_driver_bound_is_refused():
    text = _refused([_clock(200e6, duration_ns=130_000_000)], shots=1000, error=ValueError)
    assert "lasts 130 s" in text and "at most 60 s" in text


def test_a_run_within_limits_is_played():
    schedule = [_clock(200e6), {"t_ns": 0, "duration_ns": 10, "channel": "detect", "window": "d"}]
    with ReplayServer(
        [op("describe", DESCRIBE), op("run", {"counts": [[1]]}, shots=1, schedule=schedule)]
    ) as server:
        pulser = open_instrument(
            "pulser_attack_ok", "ionpilot_pulser", f"tcp://127.0.0.1:{server.port}", LAB_LIMITS
        )
        try:
            assert pulser.run(1, schedule)["counts"] == [[1]]
        finally:
            pulser.close()
        assert server.failures == [] and server.remaining == 0


def test_a_boolean_is_not_a_set_point():
    with ReplayServer([op("describe", DESCRIBE)]) as server:
        pulser = open_instrument(
            "pulser_attack_bool", "ionpilot_pulser", f"tcp://127.0.0.1:{server.port}"
        )
        try:
            with pytest.raises(TypeError, match="boolean, not a number"):
                pulser.dds_amplitude(True)
        finally:
            pulser.close()
        assert server.failures == [] and server.remaining == 0
