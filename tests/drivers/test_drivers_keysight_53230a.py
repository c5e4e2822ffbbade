"""53230A driver against its pyvisa-sim YAML: gate time follows into the timeout, NaN refused."""

# The tests override in pyproject ("test_*") does not match mypy module names: say it here.
# mypy: disable-error-code="no-untyped-def"

import itertools

import pytest

from ionpilot.drivers.errors import InstrumentReplyError, OutOfLimitsError
from ionpilot.drivers.registry import open_instrument

GOOD = "TCPIP0::127.0.0.1::5025::SOCKET"
GARBLED = "TCPIP0::127.0.0.1::5026::SOCKET"
_names = itertools.count()


def _open(address=GOOD, limits=None):
    return open_instrument(
        f"counter{next(_names)}",
        "keysight_53230a",
        address,
        limits,
        simulated=True,
        timeout_s=0.2,
    )


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
