"""HMC8043 driver against its pyvisa-sim YAML: channel selection on the same line, outputs."""

import pytest
from drivertools import GARBLED, GOOD, open_recorded

from ionpilot.drivers.errors import InstrumentReplyError, OutOfLimitsError

LAB_LIMITS = {"current": {"min": 0, "max": 2.5}, "voltage": {"min": 0, "max": 3}}


def _open(address=GOOD, limits=None):
    return open_recorded("oven", "hmc8043", address, limits)


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
