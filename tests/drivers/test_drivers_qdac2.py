"""QDAC-II driver against its pyvisa-sim YAML: 24 channels, slew, range/filter, bad replies."""

import pytest
from drivertools import GARBLED, GOOD, open_recorded

from ionpilot.drivers.errors import InstrumentReplyError, OutOfLimitsError

LAB_LIMITS = {"voltage": {"min": -5, "max": 5}, "slew_rate": {"min": 0.01, "max": 10}}


def _open(address=GOOD, limits=None):
    return open_recorded("qdac", "qdac2", address, limits)


@pytest.fixture
def qdac():
    inst, sent = _open(limits=LAB_LIMITS)
    yield inst, sent
    inst.close()


def test_channels(qdac):
    inst, _ = qdac
    assert len(inst.channels) == 24
    assert inst.channel(24) is inst.ch24
    assert inst.ch01.voltage() == 0.0
    assert inst.ch01.output_range() == "high" and inst.ch01.output_filter() == "high"
    with pytest.raises(KeyError):
        inst.channel(25)


def test_voltage_set_makes_the_slew_safe_first(qdac):
    inst, sent = qdac
    assert inst.ch03.slew_rate() == 2e7  # power-on: effectively a jump
    sent.clear()
    inst.ch03.voltage(1.25)
    assert sent == [
        "sour3:volt:slew?",
        "sour3:volt:slew 10",
        "syst:err?",
        "sour3:volt:mode fix",  # as QDevil's driver: a channel left sweeping takes fixed DC
        "sour3:volt 1.25",
        "syst:err?",
    ]
    assert inst.ch03.slew_rate() == 10.0
    sent.clear()
    inst.ch03.voltage(-1.5)  # slew already safe: no second slew write
    assert sent == ["sour3:volt:slew?", "sour3:volt:mode fix", "sour3:volt -1.5", "syst:err?"]
    assert inst.ch03.voltage() == -1.5


def test_voltage_and_slew_limits(qdac):
    inst, sent = qdac
    sent.clear()
    with pytest.raises(OutOfLimitsError):
        inst.ch02.voltage(5.5)
    with pytest.raises(OutOfLimitsError):
        inst.ch02.slew_rate(100.0)
    assert sent == []
    inst.ch02.slew_rate(0.5)
    assert inst.ch02.slew_rate() == 0.5


def test_range_and_filter_words(qdac):
    inst, sent = qdac
    inst.ch04.output_range("low")
    inst.ch04.output_filter("dc")
    assert inst.ch04.output_range() == "low" and inst.ch04.output_filter() == "dc"
    assert "sour4:rang low" in sent and "sour4:filt dc" in sent
    with pytest.raises(ValueError):
        inst.ch04.output_filter("low")


@pytest.mark.parametrize("name", ["voltage", "slew_rate", "output_range"])
def test_bad_replies(name):
    inst, _ = _open(GARBLED)
    try:
        with pytest.raises(InstrumentReplyError):
            getattr(inst.ch01, name).get()
    finally:
        inst.close()


def test_present_voltage(qdac):
    inst, _ = qdac
    assert inst.ch01.voltage_last() == 0.0


def test_infinite_slew_replies_parse():
    from ionpilot.drivers.qdac2 import parse_slew

    assert parse_slew("INF") == parse_slew("9.9E37") == float("inf")
    assert parse_slew("2e7") == 2e7
    with pytest.raises(InstrumentReplyError):
        parse_slew("fast")


def test_telemetry_names(qdac):
    inst, _ = qdac
    names = inst.telemetry_parameters()
    assert "ch01.voltage" in names and "ch24.slew_rate" in names
    assert set(inst.guarded_parameters()) >= {"ch01.voltage", "ch12.slew_rate"}
