"""Bristol 871A driver: SCPI strings on pyvisa-sim, banner and units on a loopback replay."""

import itertools

import pytest
from drivertools import record_writes

from ionpilot.drivers.bristol_871a import Bristol871a
from ionpilot.drivers.errors import InstrumentCommandError, InstrumentReplyError, OutOfLimitsError
from ionpilot.drivers.hardware import MODELS
from ionpilot.drivers.registry import open_instrument
from ionpilot.drivers.replay import Exchange, ReplayServer

GOOD = "TCPIP0::127.0.0.1::5025::SOCKET"
GARBLED = "TCPIP0::127.0.0.1::5026::SOCKET"
_names = itertools.count()


def _open(address=GOOD):
    return open_instrument(
        f"wm{next(_names)}", "bristol_871a", address, simulated=True, timeout_s=0.2
    )


@pytest.fixture
def wavemeter():
    inst = _open()
    yield inst
    inst.close()


def test_readings_in_si_units(wavemeter):
    assert wavemeter.frequency() == pytest.approx(811.291490e12, rel=1e-15)
    assert wavemeter.wavelength() == pytest.approx(369.526222e-9, rel=1e-15)
    assert wavemeter.power() == pytest.approx(0.25e-3)
    assert wavemeter.read_all() == {
        "index": 1523,
        "valid": True,
        "wavelength_m": pytest.approx(369.526222e-9),
        "power_w": pytest.approx(0.25e-3),
    }
    assert wavemeter.frequency.unit == "Hz" and wavemeter.wavelength.unit == "m"


def test_fibre_switch(wavemeter):
    assert wavemeter.switch_channel() == 1
    wavemeter.switch_channel(4)
    assert wavemeter.switch_channel() == 4
    with pytest.raises(OutOfLimitsError):
        wavemeter.switch_channel(9)
    with pytest.raises(TypeError):
        wavemeter.switch_channel(2.5)
    wavemeter.calibrate()


@pytest.mark.parametrize("name", ["frequency", "wavelength", "power"])
def test_bad_replies(name):
    inst = _open(GARBLED)
    try:
        with pytest.raises(InstrumentReplyError):
            getattr(inst, name).get()
        with pytest.raises(InstrumentReplyError):
            inst.read_all()
    finally:
        inst.close()


def _line(text: bytes) -> bytes:
    return text + b"\r\n"


def test_banner_is_discarded_and_errors_are_read_back():
    script = [
        Exchange(b":SYST:ERR?", _line(b'0,"No error"')),
        Exchange(b":UNIT:FREQ THZ", b""),  # the units the parsers read
        Exchange(b":UNIT:WAV NM", b""),
        Exchange(b":UNIT:POW MW", b""),
        Exchange(b":SYST:ERR?", _line(b'0,"No error"')),
        Exchange(b":ROUT:CHAN?", _line(b"1")),  # which input routed readings belong to
        Exchange(b"*IDN?", _line(b"BRISTOL WAVELENGTH METER,871A,871001,3.2.1")),
        Exchange(b"*IDN?", _line(b"BRISTOL WAVELENGTH METER,871A,871001,3.2.1")),
        Exchange(b":MEAS:FREQ?", _line(b"811.291490")),
        Exchange(b":ROUT:CHAN 2", b""),
        Exchange(b":SYST:ERR?", _line(b'0,"No error"')),
        Exchange(b":MEAS:FREQ?", b""),  # a refused query gets no reply ...
        Exchange(b":SYST:ERR?", _line(b'-113,"Undefined header"')),  # ... the queue says why
    ]
    banner = _line(b"Bristol Instruments 871A Wavelength Meter, SN 871001")
    with ReplayServer(script, terminator=b"\r\n", greeting=banner) as server:
        address = f"TCPIP0::127.0.0.1::{server.port}::SOCKET"
        inst = Bristol871a(f"wm{next(_names)}", address, visalib="@py", timeout=0.5)
        try:
            assert inst.IDN()["model"] == "871A"
            assert inst.frequency() == pytest.approx(811.29149e12)
            inst.switch_channel(2)
            with pytest.raises(InstrumentCommandError, match="-113"):
                inst.frequency()
        finally:
            inst.close()
        assert server.failures == [] and server.remaining == 0


class FakeTime:
    """Injected sleep/monotonic: time moves only when the driver sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self):
        return self.now


def test_measure_switches_waits_and_reads_in_one_call():
    fake = FakeTime()
    inst = open_instrument(
        f"wm{next(_names)}",
        "bristol_871a",
        GOOD,
        simulated=True,
        timeout_s=0.2,
        switch_settle_s=0.03,
        sleep=fake.sleep,
        monotonic=fake.monotonic,
    )
    try:
        sent = record_writes(inst)
        assert inst.measure(4) == pytest.approx(811.291490e12, rel=1e-15)
        assert sent == [":ROUT:CHAN 4", ":SYST:ERR?", ":MEAS:FREQ?"]
        assert fake.sleeps == [0.03]  # the settle comes between the switch and the reading
        assert inst.switch_channel() == 4
        assert "measure" in type(inst).bus_methods
        sent.clear()
        for bad in (0, 9):
            with pytest.raises(OutOfLimitsError):
                inst.measure(bad)
        for wrong in (2.0, True, "3"):
            with pytest.raises(TypeError):
                inst.measure(wrong)
        assert sent == []  # nothing reached the instrument
    finally:
        inst.close()


def test_each_input_is_a_channel_and_routed_readings_are_named_by_input():
    fake = FakeTime()
    inst = open_instrument(
        f"wm{next(_names)}",
        "bristol_871a",
        GOOD,
        simulated=True,
        timeout_s=0.2,
        sleep=fake.sleep,
        monotonic=fake.monotonic,
    )
    try:
        assert [m.short_name for m in inst.channel_modules()] == [f"ch{n}" for n in range(1, 9)]
        model = MODELS["bristol_871a"]  # what the config check lets `chN.<parameter>` name
        assert model.channels == 8
        assert set(model.channel_parameter_names()) == set(inst.ch1.parameters)
        assert "ch3.frequency" in inst.telemetry_parameters()
        assert inst.routed_channel == 1  # read at connect
        assert inst.reading_name("frequency") == "ch1.frequency"
        sent = record_writes(inst)
        assert inst.parameter_by_path("ch3.frequency").get() == pytest.approx(811.29149e12)
        assert sent == [":ROUT:CHAN 3", ":SYST:ERR?", ":MEAS:FREQ?"]  # measure(3)
        assert inst.routed_channel == 3
        assert inst.reading_name("wavelength") == "ch3.wavelength"
        assert inst.reading_name("switch_channel") == "switch_channel"  # not a reading of one
        inst.measure(5)
        assert inst.ch5.frequency.cache.get(get_if_invalid=False) == pytest.approx(811.29149e12)
        assert inst.call_reading("measure", [5]) == "ch5.frequency"
        assert inst.call_reading("read_all", []) is None
        assert inst.call_reading("measure", ["5"]) is None  # refused by measure anyway
        with pytest.raises(OutOfLimitsError):
            inst.switch_channel(9)
        assert inst.reading_name("power") == "ch5.power"  # a refused switch moved nothing
    finally:
        inst.close()
