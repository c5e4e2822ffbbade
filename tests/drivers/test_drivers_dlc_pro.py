"""DLC pro driver: DeCoF strings on pyvisa-sim, plus banner/prompt framing on a loopback replay."""

import pytest
import pyvisa
from drivertools import GARBLED, GOOD, open_recorded, unique_name

from ionpilot.drivers.dlc_pro import DlcPro
from ionpilot.drivers.errors import InstrumentCommandError, InstrumentReplyError, OutOfLimitsError
from ionpilot.drivers.replay import Exchange, ReplayServer

LAB_LIMITS = {"current": {"min": 0.0, "max": 0.15}, "piezo_voltage": {"min": 10, "max": 130}}


def _open(address=GOOD, limits=None):
    return open_recorded("laser", "dlc_pro", address, limits)


@pytest.fixture
def laser():
    inst, sent = _open(limits=LAB_LIMITS)
    yield inst, sent
    inst.close()


def test_reads_in_si_units(laser):
    inst, _ = laser
    assert inst.IDN()["model"] == "DLCpro"
    assert inst.current() == pytest.approx(0.060)
    assert inst.current_act() == pytest.approx(0.060000713)
    assert inst.piezo_voltage() == 70.0 and inst.piezo_voltage_act() == pytest.approx(70.000412)
    assert inst.emission() is True and inst.enabled() is True and inst.lock_state() == 2


def test_sets_speak_milliamps_on_the_wire(laser):
    inst, sent = laser
    inst.current(0.0625)
    inst.piezo_voltage(72.5)
    inst.enabled(False)
    assert sent == [
        "(param-set! 'laser1:dl:cc:current-set 62.5)",
        "(param-set! 'laser1:dl:pc:voltage-set 72.5)",
        "(param-set! 'laser1:dl:cc:enabled #f)",
    ]
    assert inst.current() == 0.0625 and inst.enabled() is False


def test_limits_in_amps(laser):
    inst, sent = laser
    sent.clear()
    with pytest.raises(OutOfLimitsError):
        inst.current(0.151)
    with pytest.raises(OutOfLimitsError):
        inst.piezo_voltage(5.0)
    assert sent == []


def test_errors_become_command_errors(laser):
    inst, _ = laser
    with pytest.raises(InstrumentCommandError, match="unknown parameter"):
        inst.param_ref("laser1:foo")
    with pytest.raises(InstrumentCommandError, match="out of range"):
        inst.param_set("laser1:dl:cc:current-set", "300")
    with pytest.raises(InstrumentCommandError, match="syntax error"):
        inst.ask("(foo)")
    with pytest.raises(ValueError):
        inst.param_ref("laser1:x) (param-set! 'laser1:dl:cc:current-set 250")
    assert inst.current() == pytest.approx(0.060)  # still in step


def test_relock(laser):
    inst, sent = laser
    inst.relock()
    assert sent[-1] == "(param-set! 'laser1:dl:lock:lock-enabled #t)"


@pytest.mark.parametrize("name", ["current", "current_act", "emission"])
def test_bad_replies(name):
    inst, _ = _open(GARBLED)
    try:
        with pytest.raises(InstrumentReplyError):
            getattr(inst, name).get()
    finally:
        inst.close()


def test_set_without_success_reply_raises():
    inst, _ = _open(GARBLED)
    try:
        with pytest.raises(InstrumentReplyError):
            inst.piezo_voltage(70.0)
    finally:
        inst.close()


def _reply(text: bytes) -> bytes:
    return text + b"\n> "


def test_banner_and_prompt_framing_over_tcp():
    script = [
        Exchange(b"(param-ref 'system-type)", _reply(b'"DLCpro"')),
        Exchange(b"(param-ref 'serial-number)", _reply(b'"DLCPRO_000369"')),
        Exchange(b"(param-ref 'fw-ver)", _reply(b'"3.3.3"')),
        Exchange(b"(param-ref 'laser1:dl:cc:current-act)", _reply(b"62.500000")),
        Exchange(b"(param-set! 'laser1:dl:pc:voltage-set 70)", _reply(b"0")),
        Exchange(b"(param-ref 'laser1:dl:cc:current-set)", _reply(b"Error: 3 value out of range")),
        Exchange(b"(param-ref 'laser1:emission)", _reply(b"#f")),
    ]
    with ReplayServer(script, greeting=b"DeCoF Command Line\r\n> ") as server:
        address = f"TCPIP0::127.0.0.1::{server.port}::SOCKET"
        inst = DlcPro(unique_name("laser"), address, visalib="@py", timeout=2)
        try:
            assert inst.current_act() == 0.0625
            inst.piezo_voltage(70.0)
            with pytest.raises(InstrumentCommandError):
                inst.current()
            assert inst.emission() is False
        finally:
            inst.close()
        assert server.failures == [] and server.remaining == 0


def test_close_releases_the_socket_so_a_host_can_reconnect():
    script = [
        Exchange(b"(param-ref 'system-type)", _reply(b'"DLCpro"')),
        Exchange(b"(param-ref 'serial-number)", _reply(b'"DLCPRO_000369"')),
        Exchange(b"(param-ref 'fw-ver)", _reply(b'"3.3.3"')),
        Exchange(b"(param-ref 'laser1:emission)", b""),  # no reply: the driver times out
        Exchange(b"(param-ref 'system-type)", _reply(b'"DLCpro"')),
        Exchange(b"(param-ref 'serial-number)", _reply(b'"DLCPRO_000369"')),
        Exchange(b"(param-ref 'fw-ver)", _reply(b'"3.3.3"')),
        Exchange(b"(param-ref 'laser1:emission)", _reply(b"#t")),
    ]
    with ReplayServer(script, greeting=b"DeCoF Command Line\r\n> ") as server:
        address = f"TCPIP0::127.0.0.1::{server.port}::SOCKET"
        inst = DlcPro(unique_name("laser"), address, visalib="@py", timeout=0.3)
        with pytest.raises(pyvisa.errors.VisaIOError):
            inst.emission()
        inst.close()
        assert pyvisa.ResourceManager("@py").list_opened_resources() == []
        again = DlcPro(unique_name("laser"), address, visalib="@py", timeout=2)
        try:
            assert again.emission() is True
        finally:
            again.close()
        assert server.connections == 2 and server.failures == []
