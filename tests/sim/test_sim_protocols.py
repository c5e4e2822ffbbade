"""Every simulated instrument answers its model's commands and fails like the real one."""

from __future__ import annotations

import json

from ionpilot.sim.instruments import (
    Bristol871a,
    DlcPro,
    Hmc8043,
    Keysight53230a,
    Pulser,
    Qdac2,
    Sc10,
    Smb100a,
)
from ionpilot.sim.world import World


def text(reply: bytes | None) -> str | None:
    return None if reply is None else reply.decode()


def test_smb100a_commands_and_error_queue() -> None:
    rf = Smb100a(World(), "rf")
    assert (text(rf.handle("*IDN?")) or "").startswith("Rohde&Schwarz,SMB100A")
    assert rf.handle("SOUR:FREQ 25 MHz") is None
    assert text(rf.handle("SOURce:FREQuency?")) == "25000000\n"
    assert text(rf.handle(":SOUR:POW -3;:OUTP:STAT 0;:POW?;:OUTP?")) == "-3;0\n"
    assert rf.handle("BOGUS:CMD 1") is None
    assert rf.handle("SOUR:FREQ?") is not None
    assert rf.handle("SOUR:FREQ 9e9") is None  # out of range: nothing applied
    assert rf.handle("OUTP:STAT maybe") is None
    assert text(rf.handle("SYST:ERR?")) == '-113,"Undefined header"\n'
    assert text(rf.handle("SYST:ERR?")) == '-222,"Data out of range"\n'
    assert text(rf.handle("SYST:ERR?")) == '-224,"Illegal parameter value"\n'
    assert text(rf.handle("SYST:ERR?")) == '0,"No error"\n'
    assert text(rf.handle("FREQ?")) == "25000000\n"
    for _ in range(12):
        rf.handle("NOPE")
    assert len(rf.errors) == 10 and rf.errors[-1] == '-350,"Queue overflow"'


def test_qdac2_channels_ranges_and_slew() -> None:
    world = World()
    dac = Qdac2(world, "dc")
    dac.handle("sour3:volt:slew 1")
    dac.handle("sour3:volt 2.0")
    assert text(dac.handle("sour3:volt?")) == "2\n"
    assert text(dac.handle("sour3:volt:last?")) == "0\n"
    world.advance(1.0)
    assert float(dac.handle("sour3:volt:last?") or b"nan") == 1.0
    dac.handle("sour4:rang low")
    assert dac.handle("sour4:volt 3") is None
    assert text(dac.handle("syst:err?")) == '-222, "Data out of range"\n'
    assert text(dac.handle("sour4:rang?")) == "low\n"
    assert dac.handle("sour25:volt 0") is None
    assert text(dac.handle("syst:err?")) == '-114, "Header suffix out of range"\n'


def test_hmc8043_channel_selection_like_the_qcodes_driver() -> None:
    world = World()
    psu = Hmc8043(world, "oven")
    psu.handle("INSTrument:NSELect 1;:SOURce:VOLTage 3;:SOURce:CURRent 2")
    psu.handle("INST:NSEL 1;:OUTP:CHAN ON;:OUTP:MAST ON")
    assert text(psu.handle("INSTrument:NSELect 1;:OUTPut:CHANnel:STATe?")) == "1\n"
    current = float(text(psu.handle("INST:NSEL 1;:MEAS:CURR?")) or "nan")
    assert abs(current - 2.0) < 0.01
    assert abs(float(text(psu.handle("MEAS:VOLT?")) or "nan") - 1.6) < 1e-9
    assert text(psu.handle("INST OUT2;:INST?")) == "OUT2\n"


def test_counter_gate_consumes_world_time() -> None:
    world = World()
    counter = Keysight53230a(world, "beat")
    counter.handle("CONF:FREQ (@1)")
    counter.handle("SENS:FREQ:GATE:TIME 1")
    assert text(counter.handle("SENS:FREQ:GATE:TIME?")) == "+1.000000000000000E+00\n"
    t0 = world.now()
    value = float(text(counter.handle("READ?")) or "nan")
    assert world.now() == t0 + 1.0
    assert abs(value - 60e6) < 1e3
    assert text(counter.handle("MEAS:FREQ? (@2)")) == "+9.91000000000000E+37\n"  # ASC,15
    assert text(counter.handle("SYST:ERR?")) == '+0,"No error"\n'
    assert text(counter.handle("FETC?")) == "+9.91000000000000E+37\n"  # the readings again
    counter.handle("*RST")
    assert counter.handle("FETC?") is None  # nothing measured since the reset
    assert text(counter.handle("SYST:ERR?")) == '-230,"Data corrupt or stale"\n'


def test_bristol_banner_channels_and_invalid_exposures() -> None:
    world = World()
    wm = Bristol871a(world, "wm")
    assert wm.banner().endswith(b"\r\n") and wm.max_clients == 1
    assert text(wm.handle(":ROUT:CHAN 2;:ROUT:CHAN?")) == "2\r\n"
    freq = float(text(wm.handle(":MEAS:FREQ?")) or "nan")
    assert abs(freq - 320.56925) < 1e-4
    _index, status, wav, power = (text(wm.handle(":READ:ALL?")) or "").strip().split(",")
    assert status == "0" and float(wav) > 935 and float(power) > 0
    wm.handle(":ROUT:CHAN 7")
    assert text(wm.handle(":MEAS:FREQ?")) == "0.000000\r\n"
    assert (text(wm.handle(":READ:ALL?")) or "").split(",")[1] == "40"  # QUES bits 3 and 5
    wm.handle(":ROUT:CHAN 9")
    assert text(wm.handle(":SYST:ERR?")) == '-222,"Data out of range"\r\n'


def test_dlc_pro_prompt_values_and_errors() -> None:
    world = World()
    dlc = DlcPro(world, "laser_935", "935")
    assert dlc.banner() == b"DeCoF Command Line\r\n> "
    assert dlc.handle("(param-ref 'laser1:dl:pc:voltage-set)") == b"70.000000\n> "
    assert dlc.handle("(param-set! 'laser1:dl:pc:voltage-set 72.5)") == b"0\n> "
    assert dlc.handle('(param-ref "laser1:emission")') == b"#t\n> "
    assert (dlc.handle("(param-set! 'laser1:emission #f)") or b"").startswith(b"Error: 4 ")
    assert dlc.handle("(param-ref 'laser1:foo)") == b"Error: 2 unknown parameter 'laser1:foo'\n> "
    assert (dlc.handle("(param-ref 'laser1") or b"").startswith(b"Error: 1 syntax error")
    assert (dlc.handle("(param-set! 'laser1:dl:cc:current-set 900)") or b"").startswith(
        b"Error: 3 "
    )
    assert (dlc.handle("(param-set! 'laser1:dl:cc:enabled 1)") or b"").startswith(b"Error: 5 ")
    assert world.lasers["935"].piezo_v == 72.5


def test_clock_laser_lock_relocks_after_unlock() -> None:
    world = World()
    dlc = DlcPro(world, "laser_435", "435")
    assert dlc.handle("(param-ref 'laser1:dl:lock:state)") == b"2\n> "
    world.inject("cavity_unlock")
    assert dlc.handle("(param-ref 'laser1:dl:lock:state)") == b"0\n> "
    assert dlc.handle("(param-ref 'laser1:dl:lock:lock-enabled)") == b"#t\n> "
    dlc.handle("(param-set! 'laser1:dl:lock:lock-enabled #t)")
    assert dlc.handle("(param-ref 'laser1:dl:lock:state)") == b"1\n> "
    world.advance(world.settings.clock_laser.relock_time + 0.1)
    assert dlc.handle("(param-ref 'laser1:dl:lock:state)") == b"2\n> "


def test_sc10_echo_prompt_and_errors() -> None:
    world = World()
    sc = Sc10(world, "shutter_399", "399")
    assert sc.handle("ens?") == b"ens?\r0\r> "
    assert sc.handle("ens") == b"ens\r> "
    assert world.shutters["399"] is True
    assert sc.handle("id?") == b"id?\rTHORLABS SC10 VERSION 1.07\r> "
    assert sc.handle("mode=9") == b"mode=9\rCMD_ARG_INVALID\r> "
    assert sc.handle("bogus") == b"bogus\rCMD_NOT_DEFINED\r> "


def test_pulser_json_errors_apply_nothing() -> None:
    world = World()
    pulser = Pulser(world, "pulser")

    def call(obj: object) -> dict:
        return json.loads(pulser.handle(json.dumps(obj)) or b"{}")

    assert call({"id": 1, "op": "ping"}) == {"id": 1, "ok": True, "result": {}}
    assert json.loads(pulser.handle("not json") or b"")["error"]["code"] == "parse_error"
    assert call({"id": 2, "op": "fly"})["error"]["code"] == "unknown_op"
    bad = call({"id": 3, "op": "set_dds", "channel": "clock_aom", "frequency_hz": 5e8})
    assert bad["error"]["code"] == "out_of_range"
    assert world.dds["clock_aom"]["frequency_hz"] == 200e6
    bad = call({"id": 4, "op": "run", "shots": 1, "schedule": [{"channel": "laser"}]})
    assert bad["ok"] is False and bad["error"]["code"] == "bad_request"
    good = call({"id": 5, "op": "set_dds", "channel": "clock_aom", "frequency_hz": 2.1e8})
    assert good["result"]["frequency_hz"] == 2.1e8
    described = call({"id": 6, "op": "describe"})["result"]
    assert described["model"] == "ionpilot_pulser" and "clock_aom" in described["dds_channels"]
