"""53230A driver against its pyvisa-sim YAML: gate time follows into the timeout, NaN refused."""

import pytest
from drivertools import GARBLED, GOOD, open_recorded

from ionpilot.drivers.errors import InstrumentReplyError, OutOfLimitsError


def _open(address=GOOD, limits=None):
    inst, _ = open_recorded("counter", "keysight_53230a", address, limits)
    return inst


@pytest.fixture
def counter():
    inst = _open(limits={"gate_time": {"min": 0.01, "max": 10}})
    yield inst
    inst.close()


def test_reading(counter):
    assert counter.frequency() == pytest.approx(60000012.3456789, rel=1e-15)
    assert counter.gate_time() == 0.1


def test_gate_time_sets_the_timeout(counter):
    counter.gate_time(2.0)
    assert counter.gate_time() == 2.0
    assert counter.timeout() == pytest.approx(3.0)
    counter.gate_time(0.05)
    assert counter.timeout() == pytest.approx(1.05)


def test_gate_time_limits(counter):
    with pytest.raises(OutOfLimitsError):
        counter.gate_time(20.0)
    with pytest.raises(OutOfLimitsError):
        counter.gate_time(1e-3)


def test_input_channel_reconfigures(counter):
    counter.input_channel(2)
    assert counter.input_channel() == 2


def test_no_signal_is_not_a_frequency():
    inst = _open(GARBLED)
    try:
        with pytest.raises(InstrumentReplyError, match="finite"):
            inst.frequency()
    finally:
        inst.close()
