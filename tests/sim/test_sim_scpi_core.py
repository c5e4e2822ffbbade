"""The one SCPI core of the simulated SCPI instruments: IEEE 488.2 common commands and status
model, SCPI parser rules and error numbers, the same on every model (called in process)."""

from __future__ import annotations

import pytest

from ionpilot.sim.instruments import Bristol871a, Hmc8043, Keysight53230a, Qdac2, Smb100a
from ionpilot.sim.instruments.scpi import ScpiProtocol, parse_channel_set, split_args
from ionpilot.sim.world import World

MODELS = (Smb100a, Qdac2, Hmc8043, Bristol871a, Keysight53230a)


def ask(inst: ScpiProtocol, line: str) -> str | None:
    reply = inst.handle(line)
    return None if reply is None else reply.decode("latin-1").removesuffix(inst.terminator)


def error_code(inst: ScpiProtocol) -> int:
    return int((ask(inst, "SYST:ERR?") or "").split(",")[0])


@pytest.fixture(params=MODELS, ids=lambda cls: cls.__name__)
def inst(request: pytest.FixtureRequest) -> ScpiProtocol:
    instrument: ScpiProtocol = request.param(World(), "x")
    return instrument


def test_common_commands_and_status_model(inst: ScpiProtocol) -> None:
    assert int(ask(inst, "*ESR?") or "-1") == 0x80  # power-on bit, read and cleared
    assert ask(inst, "*ESR?") == "0"
    assert ask(inst, "*TST?") == "0" and ask(inst, "*OPC?") == "1"
    assert ask(inst, "*OPT?") is not None
    assert ask(inst, "*ESE 60;*SRE 32;*ESE?;*SRE?") == "60;32"
    inst.handle("*WAI;*OPC")
    assert ask(inst, "*STB?") == "0"  # OPC (bit 0) is not enabled in ESE
    inst.handle("NO:SUCH:HEADER")
    assert int(ask(inst, "*STB?") or "0") == 0x04 | 0x20 | 0x40  # EAV, ESB, RQS
    assert int(ask(inst, "*ESR?") or "0") == 0x01 | 0x20  # OPC and command error
    assert ask(inst, "SYST:ERR:COUN?") == "1"
    inst.handle("*CLS")
    assert ask(inst, "SYST:ERR:COUN?") == "0" and ask(inst, "*STB?") == "0"
    assert ask(inst, "*ESE?") == "60"  # *CLS keeps the enable registers
    inst.handle("*ESE 256")
    assert error_code(inst) == -222
    assert ask(inst, "*IDN?") == inst.idn


def test_error_numbers_of_the_parser(inst: ScpiProtocol) -> None:
    cases = {
        "NO:SUCH:HEADER 1": -113,
        "*IDN? 1": -108,
        "*RST 1": -108,
        "*ESE": -109,
        "*ESE maybe": -224,
        "$%&": -102,
        '*ESE "1': -102,
        "SYST:ERR": -113,  # a query-only header sent as a command
    }
    for line, code in cases.items():
        assert inst.handle(line) is None, line
        assert error_code(inst) == code, line
    assert error_code(inst) == 0


def test_queue_keeps_the_oldest_and_marks_overflow(inst: ScpiProtocol) -> None:
    for _ in range(inst.queue_size + 5):
        inst.handle("NOPE")
    assert len(inst.errors) == inst.queue_size
    assert inst.errors[-1].startswith("-350")
    assert inst.errors[0].startswith("-113")
    everything = ask(inst, "SYST:ERR:ALL?") or ""
    assert everything.count("-113") == inst.queue_size - 1
    assert ask(inst, "SYST:ERR:ALL?") == inst.no_error


def test_case_forms_paths_and_compound_lines() -> None:
    rf = Smb100a(World(), "rf")
    for line in ("SOUR:FREQ 25e6", "source:frequency:cw 25e6", ":sOuRcE:fReQ 25E6", "FREQ 25MHz"):
        rf.handle("FREQ 30e6")
        rf.handle(line)
        assert ask(rf, "FREQ?") == "25000000", line
    assert ask(rf, "SOUR:FREQ 26e6;POW -4;:POW?;FREQ?") == "-4;26000000"  # relative path
    assert ask(rf, "FREQ?;BOGUS;POW?") == "26000000"  # the error ends the line
    assert error_code(rf) == -113
    rf.handle("FREQ 1 kV")
    assert error_code(rf) == -224
    assert ask(rf, "FREQ?") == "26000000"
    rf.handle("SOUR1:FREQ 27e6;:SOUR2:FREQ 28e6")
    assert error_code(rf) == -114
    assert ask(rf, "FREQ?") == "27000000"


def test_reset_states_of_the_sources() -> None:
    world = World()
    rf, dac, psu = Smb100a(world, "rf"), Qdac2(world, "dc"), Hmc8043(world, "psu")
    assert world.rf_output  # the lab is found with the trap running
    rf.handle("*RST")
    assert ask(rf, "OUTP?;FREQ?;POW?;FREQ:MODE?;PULM:STAT?;PHAS?") == "0;1000000000;-30;CW;0;0"
    assert not world.rf_output
    dac.handle("sour7:volt 3;:sour7:volt:mode swe")
    dac.handle("*RST")
    assert ask(dac, "sour7:volt?;:sour7:volt:mode?;:sour7:rang?") == "0;fix;high"
    psu.handle("INST:NSEL 1;:VOLT 3;:CURR 2;:OUTP:CHAN 1;:OUTP:MAST 1")
    psu.handle("*RST")
    assert ask(psu, "OUTP:MAST?;INST:NSEL?;VOLT?;OUTP:CHAN?") == "0;1;0;0"


def test_argument_splitting() -> None:
    assert split_args('1,"a,b",(@1,2),#13a,b') == ["1", '"a,b"', "(@1,2)", "#13a,b"]
    assert parse_channel_set("(@1,3:5)") == [1, 3, 4, 5]
