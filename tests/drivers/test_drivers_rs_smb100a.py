"""SMB100A driver against its pyvisa-sim YAML: command strings, ramps, limits, bad replies."""

import itertools

import pytest

from ionpilot.drivers.errors import InstrumentCommandError, InstrumentReplyError, OutOfLimitsError
from ionpilot.drivers.registry import open_instrument

GOOD = "TCPIP0::127.0.0.1::5025::SOCKET"
GARBLED = "TCPIP0::127.0.0.1::5026::SOCKET"
_names = itertools.count()
LAB_LIMITS = {"frequency": {"min": 20e6, "max": 40e6}, "power": {"min": -30.0, "max": 10.0}}


def _open(address=GOOD, limits=None):
    rf = open_instrument(
        f"rf{next(_names)}", "rs_smb100a", address, limits, simulated=True, timeout_s=0.2
    )
    rf.power.inter_delay = 0
    sent: list[str] = []
    handle = rf.visa_handle
    original = handle.write

    def spy(message, *args, **kwargs):
        sent.append(message)
        return original(message, *args, **kwargs)

    handle.write = spy
    return rf, sent


@pytest.fixture
def rf():
    inst, sent = _open()
    yield inst, sent
    inst.close()


def test_identity_and_power_on_state(rf):
    inst, _ = rf
    assert inst.IDN()["model"] == "SMB100A"
    assert inst.frequency() == 30e6
    assert inst.power() == 0.0
    assert inst.output() is True
    assert inst.frequency.unit == "Hz" and inst.power.unit == "dBm"


def test_set_frequency_sends_scpi_then_checks_error_queue(rf):
    inst, sent = rf
    inst.frequency(25.5e6)
    assert sent == ["SOUR:FREQ 25500000", "SYST:ERR?"]
    assert inst.frequency() == 25.5e6


def test_power_is_ramped_in_steps(rf):
    inst, sent = rf
    inst.power.get()
    sent.clear()
    inst.power(-2.5)
    writes = [cmd for cmd in sent if cmd.startswith("SOUR:POW ")]
    assert writes == ["SOUR:POW -1", "SOUR:POW -2", "SOUR:POW -2.5"]
    assert inst.power() == -2.5


def test_output_on_off(rf):
    inst, sent = rf
    inst.rf_off()
    assert inst.output() is False
    inst.rf_on()
    assert "OUTP:STAT 0" in sent and "OUTP:STAT 1" in sent
    assert inst.output() is True
    with pytest.raises(TypeError):
        inst.output(1)


@pytest.mark.parametrize(("name", "value"), [("frequency", 50e3), ("power", 31.0)])
def test_hardware_range_refuses_without_sending(rf, name, value):
    inst, sent = rf
    sent.clear()
    with pytest.raises(OutOfLimitsError):
        getattr(inst, name)(value)
    assert sent == []


def test_lab_limits_narrow_the_range():
    inst, sent = _open(limits=LAB_LIMITS)
    try:
        assert inst.frequency.allowed_range() == (20e6, 40e6)
        sent.clear()
        with pytest.raises(OutOfLimitsError) as info:
            inst.power(10.5)
        assert info.value.allowed == (-30.0, 10.0) and info.value.unit == "dBm"
        with pytest.raises(OutOfLimitsError):
            inst.frequency(41e6)
        assert sent == []
        inst.frequency(39e6)
        assert inst.frequency() == 39e6
    finally:
        inst.close()


def test_refused_set_raises_instrument_error(rf):
    inst, _ = rf
    with pytest.raises(InstrumentCommandError, match="-113"):
        inst.checked_write("SOUR:FOO 1")
    assert inst.errors() == []


def test_refused_query_times_out_then_reports_the_error(rf):
    inst, _ = rf
    with pytest.raises(InstrumentCommandError, match="Undefined header"):
        inst.ask("SOUR:FOO?")


@pytest.mark.parametrize("name", ["frequency", "power", "output"])
def test_bad_replies_raise_and_are_not_cached(name):
    inst, _ = _open(GARBLED)
    try:
        param = getattr(inst, name)
        with pytest.raises(InstrumentReplyError):
            param.get()
        assert param.cache.get(get_if_invalid=False) is None
    finally:
        inst.close()


def test_bus_hooks(rf):
    inst, _ = rf
    assert inst.telemetry_parameters() == ("frequency", "power", "output")
    for method in inst.bus_methods:
        assert not method.startswith("_") and callable(getattr(inst, method))
