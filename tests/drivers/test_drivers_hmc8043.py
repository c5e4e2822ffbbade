"""HMC8043 driver against its pyvisa-sim YAML: channel selection on the same line, outputs."""

# The tests override in pyproject ("test_*") does not match mypy module names: say it here.
# mypy: disable-error-code="no-untyped-def"

import itertools

import pytest

from ionpilot.drivers.errors import InstrumentReplyError, OutOfLimitsError
from ionpilot.drivers.registry import open_instrument

GOOD = "TCPIP0::127.0.0.1::5025::SOCKET"
GARBLED = "TCPIP0::127.0.0.1::5026::SOCKET"
LAB_LIMITS = {"current": {"min": 0, "max": 2.5}, "voltage": {"min": 0, "max": 3}}
_names = itertools.count()


def _open(address=GOOD, limits=None):
    inst = open_instrument(
        f"oven{next(_names)}", "hmc8043", address, limits, simulated=True, timeout_s=0.2
    )
    sent: list[str] = []
    original = inst.visa_handle.write

    def spy(message, *args, **kwargs):
        sent.append(message)
        return original(message, *args, **kwargs)

    inst.visa_handle.write = spy
    return inst, sent


@pytest.fixture
def oven():
    inst, sent = _open(limits=LAB_LIMITS)
    yield inst, sent
    inst.close()


def test_settings_go_with_their_channel_selection(oven):
    inst, sent = oven
    inst.ch1.current(2.0)
    inst.ch2.voltage(1.5)
    assert sent == ["INST:NSEL 1;:CURR 2", "SYST:ERR?", "INST:NSEL 2;:VOLT 1.5", "SYST:ERR?"]
    assert inst.ch1.current() == 2.0 and inst.ch2.voltage() == 1.5
    assert inst.ch1.voltage() == 0.0 and inst.ch2.current() == 0.0


def test_output_needs_channel_and_master(oven):
    inst, _ = oven
    assert inst.ch1.output() is False
    inst.ch1.output(True)
    assert inst.ch1.output() is True and inst.master_output() is True
    assert inst.ch2.output() is False  # master on, channel 2 not enabled
    inst.ch1.output(False)
    assert inst.master_output() is True  # switching one channel off leaves the others
    inst.all_outputs_off()
    assert inst.master_output() is False


def test_measurements(oven):
    inst, _ = oven
    assert inst.ch1.measured_current() == pytest.approx(2.001)
    assert inst.ch1.measured_voltage() == pytest.approx(1.6)
    assert "ch1.measured_current" in inst.telemetry_parameters()


def test_limits(oven):
    inst, sent = oven
    sent.clear()
    with pytest.raises(OutOfLimitsError):
        inst.ch1.current(2.6)
    with pytest.raises(OutOfLimitsError):
        inst.ch3.voltage(3.5)
    with pytest.raises(OutOfLimitsError):
        inst.channels.current(2.8)
    assert sent == []


@pytest.mark.parametrize("name", ["measured_current", "measured_voltage", "output", "current"])
def test_bad_replies(name):
    inst, _ = _open(GARBLED)
    try:
        with pytest.raises(InstrumentReplyError):
            getattr(inst.ch1, name).get()
    finally:
        inst.close()
