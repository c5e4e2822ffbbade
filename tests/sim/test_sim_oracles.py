"""The simulated SCPI instruments driven by clients other people wrote for the real ones: QDevil's
QCoDeS driver for the QDAC-II, the community QCoDeS drivers for the SMB100A and HMC8043, and Rohde
& Schwarz's own RsInstrument session. For the Bristol 871A and the Keysight 53230A, which have no
installable client, the manuals' documented command sequences go through plain pyvisa.

One simulated lab (virtual clock) serves the whole module; each test opens its own client."""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from simclients import lab_instruments, visa  # type: ignore[import-not-found]

from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import SimSettings

SCPI_MODELS = ("rf_drive", "dc_electrodes", "oven", "wavemeter", "beat_counter")
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_oracle_{next(_names)}"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    instruments = {k: v for k, v in lab_instruments().items() if k in SCPI_MODELS}
    with Lab(instruments, SimSettings(seed=11), free_ports=True) as running:
        yield running


@pytest.fixture(scope="module")
def resources(lab: Lab) -> dict[str, str]:
    return lab.resources()


# ---- R&S SMB100A -------------------------------------------------------------------------------


def test_smb100a_through_qcodes_contrib_driver(lab: Lab, resources: dict[str, str]) -> None:
    smb_module = pytest.importorskip("qcodes_contrib_drivers.drivers.RohdeSchwarz.SMB100A")
    smb = smb_module.RohdeSchwarz_SMB100A(unique("smb"), resources["rf_drive"])
    try:
        assert smb.IDN()["model"] == "SMB100A"
        smb.reset()
        assert smb.status() is False
        assert lab.world.rf_output is False
        smb.frequency(25e6)
        smb.power(-5.0)
        smb.phase(90.0)
        assert smb.frequency() == 25e6 and smb.power() == -5.0 and smb.phase() == 90.0
        smb.on()
        assert smb.status() is True and lab.world.rf_output is True
        assert lab.world.rf_frequency_hz == 25e6 and lab.world.rf_power_dbm == -5.0
        smb.pulsemod_state("on")
        assert smb.pulsemod_state() is True
        smb.sweep_freq_start(20e6)
        smb.sweep_freq_stop(30e6)
        smb.sweep_step(1e6)
        smb.sweep_dwell_time(0.01)
        assert smb.sweep_points() == 11
        assert smb.sweep_freq_start() == 20e6 and smb.sweep_freq_stop() == 30e6
        smb.sweepmode("single")
        smb.sourcemode("sweep")
        assert smb.sourcemode() == "sweep" and smb.sweepmode() == "single"
        smb.start_sweep()  # *TRG
        smb.ask("*OPC?")  # handled: the sweep runs from now
        lab.world.advance(0.035)
        smb.ask("*OPC?")
        assert lab.world.rf_frequency_hz == 23e6  # fourth step of the staircase
        lab.world.advance(1.0)
        smb.ask("*OPC?")
        assert lab.world.rf_frequency_hz == 20e6  # single sweep over: back at the start
        smb.sourcemode("CW")
        smb.ask("*OPC?")
        assert lab.world.rf_frequency_hz == 25e6
        smb.off()
        smb.ask("*OPC?")
        assert lab.world.rf_output is False
        assert smb.ask("SYST:ERR?") == '0,"No error"'
    finally:
        smb.close()


def rsinstrument_session(resource: str) -> tuple[Any, Any]:
    """R&S's own client on a simulated instrument's socket, as it opens a session: *IDN?
    checked, *RST sent (the module and the open session)."""
    rs = pytest.importorskip("RsInstrument")
    port = resource.split("::")[2]
    inst = rs.RsInstrument(
        f"TCPIP::127.0.0.1::{port}::SOCKET",
        id_query=True,
        reset=True,
        options="SelectVisa='socket', TerminationCharacter='\\n'",
    )
    return rs, inst


def test_smb100a_through_rsinstrument(lab: Lab, resources: dict[str, str]) -> None:
    rs, inst = rsinstrument_session(resources["rf_drive"])
    try:
        assert inst.idn_string.startswith("Rohde&Schwarz,SMB100A")
        assert inst.query_bool("OUTP?") is False  # the session's *RST: RF off
        inst.write_float_with_opc("SOUR:FREQ:CW", 30e6)
        inst.write_with_opc("SOUR:POW:LEV:IMM:AMPL -10")
        assert inst.query_float("SOUR:FREQ?") == 30e6
        assert inst.query_float("SOUR:POW?") == -10.0
        inst.write_bool("OUTP:STAT", True)
        assert inst.query_bool("OUTP:STAT?") is True
        with pytest.raises(rs.StatusException, match=r'-222,"Data out of range"'):
            inst.write_str("SOUR:POW:LEV:IMM:AMPL 99")  # out of range: the session sees it
        assert inst.query_float("SOUR:POW?") == -10.0  # nothing applied
        inst.write_str("*RST")
        assert inst.query_bool("OUTP?") is False
    finally:
        inst.close()


# ---- R&S HMC8043 --------------------------------------------------------------------------------


def test_hmc8043_through_qcodes_contrib_driver(lab: Lab, resources: dict[str, str]) -> None:
    hmc_module = pytest.importorskip("qcodes_contrib_drivers.drivers.RohdeSchwarz.HMC8043")
    psu = hmc_module.RohdeSchwarzHMC8043(unique("hmc"), resources["oven"], terminator="\n")
    try:
        assert psu.IDN()["model"] == "HMC8043"
        psu.ch1.set_voltage(3.0)
        psu.ch1.set_current(2.0)
        assert psu.ch1.set_voltage() == 3.0 and psu.ch1.set_current() == 2.0
        psu.ch1.state("ON")
        psu.state("ON")
        assert psu.ch1.state() == "ON" and psu.state() == "ON"
        current = psu.ch1.current()
        assert abs(current - 2.0) < 0.01
        assert abs(psu.ch1.power() - psu.ch1.voltage() * current) < 0.05
        psu.ch2.set_voltage(5.0)
        assert psu.ch2.set_voltage() == 5.0 and psu.ch1.set_voltage() == 3.0
        psu.write("*RST")
        assert psu.state() == "OFF"
        assert [ch.state() for ch in psu.channels] == ["OFF"] * 3
        assert psu.ask("SYST:ERR?") == '0,"No error"'
    finally:
        psu.close()


def test_hmc8043_through_rsinstrument(lab: Lab, resources: dict[str, str]) -> None:
    rs, inst = rsinstrument_session(resources["oven"])
    try:
        assert "HMC8043" in inst.idn_string
        inst.write_str_with_opc("INST:NSEL 1")
        inst.write_float("VOLT", 3.0)
        inst.write_float("CURR", 2.0)
        inst.write_str("OUTP:CHAN ON")
        inst.write_str("OUTP:MAST ON")
        assert inst.query_float("MEAS:SCAL:CURR?") == pytest.approx(2.0, abs=0.01)
        assert inst.query_float("MEAS:SCAL:POW?") == pytest.approx(3.2, abs=0.05)
        with pytest.raises(rs.StatusException, match=r'-222,"Data out of range"'):
            inst.write_str("VOLT 40")  # beyond 32 V
        assert inst.query_float("VOLT?") == 3.0
        inst.write_str("*RST")
        assert inst.query_bool("OUTP:MAST?") is False
    finally:
        inst.close()


# ---- QDevil QDAC-II -----------------------------------------------------------------------------


def test_qdac2_through_qdevil_driver(
    lab: Lab, resources: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    qdac_module = pytest.importorskip("qcodes_contrib_drivers.drivers.QDevil.QDAC2")
    monkeypatch.setattr(qdac_module, "sleep_s", lambda _s: None)  # reset() waits 5 s of wall time
    qdac = qdac_module.QDac2(unique("qdac"), resources["dc_electrodes"])
    try:
        qdac.reset()
        qdac.ask("*OPC?")
        assert qdac.errors() == '0, "No error"'
        assert all(lab.world.dc_output(ch) == 0.0 for ch in range(1, 25))
        ch = qdac.ch03
        ch.dc_slew_rate_V_per_s(1.0)
        ch.dc_constant_V(0.5)  # volt:mode fix, then volt
        assert ch.dc_constant_V() == 0.5 and ch.dc_mode() == "fix"  # (the set is handled)
        lab.world.advance(0.25)
        assert ch.dc_last_V() == pytest.approx(0.25)
        lab.world.advance(1.0)
        assert ch.dc_last_V() == 0.5
        ch.output_range("low")
        assert ch.output_range() == "low"
        assert ch.output_low_range_maximum_V() == 2.0
        ch.output_filter("med")
        assert ch.output_filter() == "med"
        qdac.write("sour3:volt 5")  # beyond the low range
        assert qdac.n_errors() == 1
        assert qdac.error() == '-222, "Data out of range"'
        assert ch.dc_constant_V() == 0.5
        currents = qdac.ch01.read_current_A()
        assert len(currents) == 1 and abs(currents[0]) < 1e-6
        ch.output_range("high")
        sweep = ch.dc_sweep(start_V=-1.0, stop_V=1.0, points=11, dwell_s=0.1)
        assert sweep.points() == 11 and sweep.start_V() == -1.0 and sweep.stop_V() == 1.0
        assert sweep.time_s() == pytest.approx(1.1)
        sweep.start()
        qdac.ask("*OPC?")  # the writes have been handled
        assert lab.world.dc_output(3) == -1.0
        lab.world.advance(0.55)
        assert lab.world.dc_output(3) == pytest.approx(0.0, abs=1e-9)
        assert sweep.cycles_remaining() == 1
        lab.world.advance(1.0)
        assert lab.world.dc_output(3) == pytest.approx(1.0)
        assert sweep.cycles_remaining() == 0
        sweep.abort()
        # a list goes as an IEEE 488.2 block of float32; this one holds a "\n" and a ";" byte
        newline_volts = struct.unpack("<f", b"\x0a\x3b\x80\x3f")[0]
        voltages = [0.1, newline_volts, -0.3]
        dc_list = qdac.ch05.dc_list(voltages=voltages, dwell_s=0.01)
        assert dc_list.points() == 3
        assert dc_list.values_V() == pytest.approx(voltages, abs=1e-7)
        dc_list.start()
        qdac.ask("*OPC?")
        lab.world.advance(0.015)
        assert lab.world.dc_output(5) == pytest.approx(newline_volts, abs=1e-7)
        lab.world.advance(0.1)
        assert lab.world.dc_output(5) == pytest.approx(-0.3, abs=1e-7)
        dc_list.abort()
        qdac.ch05.dc_constant_V(0.0)
        # a sine on one electrode, a trace played on another, both started by one internal trigger
        sine = qdac.ch06.sine_wave(frequency_Hz=1000, span_V=1.0, offset_V=0.5, repetitions=2)
        trace = qdac.allocate_trace("ramp4", 4)
        trace.waveform([0.1, 0.2, 0.3, 0.4])
        assert qdac.traces() == ['"ramp4"']
        awg = qdac.ch07.arbitrary_wave("ramp4", repetitions=-1, scale=2.0, offset_V=0.0)
        trigger = qdac.allocate_trigger()
        sine.start_on(trigger)
        awg.start_on(trigger)
        qdac.connect_external_trigger(1, trigger, width_s=1e-5)
        assert qdac.ext1.width_s() == 1e-5
        qdac.trigger(trigger)
        qdac.ask("*OPC?")
        lab.world.advance(2.5e-6)  # the trace plays at 1 MS/s: its third sample, scaled by 2
        assert lab.world.dc_output(7) == pytest.approx(0.6, abs=1e-6)
        lab.world.advance(0.25e-3 - 2.5e-6)  # a quarter of the sine's period
        assert lab.world.dc_output(6) == pytest.approx(1.0, abs=1e-3)
        assert sine.cycles_remaining() == 2 and awg.cycles_remaining() == -1
        lab.world.advance(5e-3)
        assert lab.world.dc_output(6) == pytest.approx(0.5, abs=1e-3)  # two periods done
        sine.abort()
        awg.abort()
        qdac.free_all_triggers()
        qdac.ch06.dc_constant_V(0.0)
        qdac.ch07.dc_constant_V(0.0)
        ch.dc_mode("fixed")
        qdac.write("sour3:volt:slew 2e7")
        qdac.write("*rst")
        lab.world.advance(1e-3)
        assert ch.dc_constant_V() == 0.0 and ch.dc_last_V() == 0.0
        assert qdac.errors() == '0, "No error"'
    finally:
        qdac.close()


def test_qdac2_arrangement_through_qdevil_driver(
    lab: Lab, resources: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """QDevil's gate arrangement: leakage matrix over channel lists, a 2-D virtual sweep
    built from triggered DC lists."""
    qdac_module = pytest.importorskip("qcodes_contrib_drivers.drivers.QDevil.QDAC2")
    monkeypatch.setattr(qdac_module, "sleep_s", lambda _s: None)
    qdac = qdac_module.QDac2(unique("qdac"), resources["dc_electrodes"])
    try:
        qdac.reset()
        arrangement = qdac.arrange(contacts={"x": 8, "y": 9}, output_triggers={"inner": 1})
        arrangement.set_virtual_voltage("x", 0.1)
        assert qdac.ch08.dc_constant_V() == 0.1
        resistance = arrangement.leakage(modulation_V=0.005, nplc=2)
        assert resistance.shape == (2, 2) and (abs(resistance) > 1e7).all()  # open electrodes
        sweep = arrangement.virtual_sweep2d(
            "x", [0.0, 0.1], "y", [0.0, 0.2], inner_step_time_s=1e-3, inner_step_trigger="inner"
        )
        sweep.start()
        assert qdac.errors() == '0, "No error"'
        qdac.abort()
        qdac.reset()
    finally:
        qdac.close()


# ---- Bristol 871A: the user's guide's SCPI sequences through pyvisa ----------------------------


def test_bristol_871a_manual_sequences(lab: Lab, resources: dict[str, str]) -> None:
    wm = visa(resources["wavemeter"], term="\r\n")
    try:
        assert wm.read().startswith("Bristol Instruments 871A")  # the telnet banner
        assert wm.query("*IDN?").startswith("BRISTOL WAVELENGTH METER,871A")
        wm.write("*RST;*CLS")
        assert wm.query(":UNIT:FREQ?") == "THZ" and wm.query(":UNIT:POW?") == "MW"
        thz = float(wm.query(":MEAS:FREQ?"))
        assert 811.28 < thz < 811.30
        nm = float(wm.query(":READ:WAV?"))
        assert nm == pytest.approx(299792.458 / thz, rel=1e-6)
        wnum = float(wm.query(":MEAS:WNUM?"))
        assert wnum == pytest.approx(1e7 / nm, rel=1e-6)
        index, status, wav, mw = wm.query(":FETC:ALL?").split(",")
        assert int(status) == 0 and float(wav) == pytest.approx(nm, abs=1e-5) and float(mw) > 0
        assert wm.query(":FETC:ALL?").split(",")[0] == index  # FETCh: the same scan again
        assert int(wm.query(":READ:ALL?").split(",")[0]) > int(index)
        temperature, pressure = wm.query(":MEAS:ENV?").split(",")
        assert float(temperature.split()[0]) > 0 and float(pressure.split()[0]) > 0
        wm.write(":UNIT:POW DBM")
        assert float(wm.query(":MEAS:POW?")) < 10.0
        wm.write(":UNIT:FREQ GHZ")
        assert float(wm.query(":MEAS:FREQ?")) == pytest.approx(thz * 1e3, rel=1e-6)
        wm.write(":SENS:AVER:STAT ON;:SENS:AVER:COUN 8")
        assert float(wm.query(":SENS:AVER:DATA? FREQ")) == pytest.approx(thz * 1e3, rel=1e-6)
        wm.write(":CALC:RES;:CALC:DELT:METH STAR")
        assert abs(float(wm.query(":CALC:DATA? FREQ"))) < 1.0  # GHz, against itself: ~0
        assert wm.query(":CALC:DELT:METH?") == "START"
        wm.write(":TRIG:SEQ:RATE 100;:SENS:DET:FUNC PULS")
        assert wm.query(":TRIG:SEQ:RATE?") == "100" and wm.query(":SENS:DET:FUNC?") == "PULS"
        wm.write(":TRIG:SEQ:RATE 33")  # not one of the VIS/NIR frame rates
        assert wm.query(":SYST:ERR?") == '-224,"Illegal parameter value"'
        wm.write(":UNIT:FREQ PHZ")  # not a unit of the 871
        assert wm.query(":SYST:ERR?") == '-224,"Illegal parameter value"'
        wm.write(":MEAS:BOGUS?")
        assert wm.query(":SYST:ERR?") == '-113,"Undefined header"'
        assert wm.query("*ESR?") == str(0x20 | 0x10)  # command and execution error seen
        wm.write("*RST")
        assert wm.query(":UNIT:FREQ?") == "THZ" and wm.query(":TRIG:SEQ:RATE?") == "20"
        assert wm.query(":SYST:ERR?") == '0,"No error"'
    finally:
        wm.close()


# ---- Keysight 53230A: the programming reference's sequences through pyvisa ---------------------


def test_keysight_53230a_manual_sequences(lab: Lab, resources: dict[str, str]) -> None:
    counter = visa(resources["beat_counter"])
    try:
        assert counter.query("*IDN?").split(",")[1] == "53230A"
        counter.write("*RST;*CLS")
        counter.write("CONF:FREQ 60E6,0.006,(@1)")  # expected value and resolution: 10 ms gate
        assert counter.query("SENS:FREQ:GATE:TIME?") == "+1.000000000000000E-02"
        assert counter.query("CONF?") == '"FREQ +6.000000000000000E+07,+6.000000000000000E-03,(@1)"'
        counter.write("SENS:FREQ:GATE:SOUR TIME;:SAMP:COUN 5;:TRIG:SOUR IMM")
        counter.write("INP1:IMP 50;:INP1:COUP DC")
        assert counter.query("INP1:IMP?") == "+5.000000000000000E+01"
        assert counter.query("INP1:COUP?") == "DC"
        t0 = lab.world.now()
        readings = [float(v) for v in counter.query("READ?").split(",")]
        assert len(readings) == 5 and all(abs(v - 60e6) < 1e4 for v in readings)
        assert lab.world.now() == pytest.approx(t0 + 5 * 0.01)
        counter.write("FORM:DATA REAL,64")
        assert counter.query("FORM:DATA?") == "REAL,64"
        values = counter.query_binary_values("READ?", datatype="d", is_big_endian=True)
        assert len(values) == 5 and all(abs(v - 60e6) < 1e4 for v in values)
        counter.write("FORM:DATA ASC;:TRIG:SOUR BUS;:SAMP:COUN 1")
        counter.write("READ?")  # a READ? waiting for a bus trigger: deadlock, no reply
        assert counter.query("SYST:ERR?") == '-214,"Trigger deadlock"'
        counter.write("INIT")
        counter.write("*TRG")
        assert abs(float(counter.query("FETC?")) - 60e6) < 1e4
        # statistics over one triggered burst; *OPC? returns when the burst has been measured
        counter.write("CONF:FREQ (@1);:SAMP:COUN 10;:CALC:AVER:STAT ON;:INIT")
        t0 = lab.world.now()
        assert counter.query("*OPC?") == "1"
        assert lab.world.now() == pytest.approx(t0 + 10 * 0.1)
        mean, sdev, low, high = (float(v) for v in counter.query("CALC:AVER:ALL?").split(","))
        assert low <= mean <= high and abs(mean - 60e6) < 1e3 and 0 < sdev < 1e3
        assert counter.query("CALC:AVER:COUN:CURR?") == "+10"
        block = counter.query("R? 4")  # four readings, erased from memory
        assert block.startswith("#") and len(block[2 + int(block[1]) :].split(",")) == 4
        assert counter.query("DATA:POIN?") == "+6"
        counter.write("CONF:PER (@1);:SAMP:COUN 1")
        assert float(counter.query("READ?")) == pytest.approx(1 / 60e6, rel=1e-6)
        assert counter.query("CONF?").startswith('"PER ')
        counter.write("SAMP:COUN 0")
        assert counter.query("SYST:ERR?") == '-222,"Data out of range"'
        counter.write("*RST")
        assert counter.query("SAMP:COUN?") == "+1" and counter.query("TRIG:SOUR?") == "IMM"
        assert counter.query("SYST:ERR?") == '+0,"No error"'
    finally:
        counter.close()


# ---- every source: *RST leaves its output off ---------------------------------------------------


def _power_everything_on(lab: Lab, clients: dict[str, Any]) -> None:
    clients["rf_drive"].write("SOUR:FREQ 30e6;:SOUR:POW 0;:OUTP:STAT ON")
    clients["oven"].write("INST:NSEL 1;:VOLT 3;:CURR 2;:OUTP:CHAN ON;:OUTP:MAST ON")
    clients["oven"].write("INST:NSEL 2;:VOLT 5;:CURR 0.1;:OUTP:CHAN ON")
    clients["dc_electrodes"].write("sour1:volt 1.5;:sour2:volt -2;:sour24:volt 9")
    for client in clients.values():
        assert client.query("*OPC?") == "1"  # every write above has been handled
    lab.world.advance(1e-3)
    assert lab.world.rf_output and lab.world.supply_master
    assert lab.world.supply_measure(1)[1] > 1.9
    assert lab.world.dc_output(24) == 9.0


def test_reset_leaves_every_source_output_off(lab: Lab, resources: dict[str, str]) -> None:
    clients = {name: visa(resources[name]) for name in ("rf_drive", "oven", "dc_electrodes")}
    try:
        _power_everything_on(lab, clients)
        for client in clients.values():
            client.write("*RST")
            assert client.query("*OPC?") == "1"
        world = lab.world
        assert world.rf_output is False
        assert world.supply_master is False and not any(ch.enabled for ch in world.supply)
        assert all(world.supply_measure(ch) == (0.0, 0.0) for ch in (1, 2, 3))
        assert all(world.dc_output(ch) == 0.0 for ch in range(1, 25))
        assert clients["rf_drive"].query("OUTP?") == "0"
        assert clients["oven"].query("OUTP:MAST?") == "0"
    finally:
        for client in clients.values():
            client.close()


# ---- a half-written line or a dropped connection changes nothing --------------------------------


def test_half_written_line_and_dropped_connection_change_nothing(
    lab: Lab, resources: dict[str, str]
) -> None:
    rf = visa(resources["rf_drive"])
    try:
        before = rf.query("SOUR:FREQ?")
        port = int(resources["rf_drive"].split("::")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"SOUR:FREQ 21e6;:OUTP:STAT ")  # no terminator: never complete
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(64) == b""  # the server has seen the end and closed its side
        assert rf.query("SOUR:FREQ?") == before
        assert rf.query("SYST:ERR?") == '0,"No error"'
    finally:
        rf.close()
