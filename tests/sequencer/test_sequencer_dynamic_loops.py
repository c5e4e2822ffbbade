"""Loops on measurement results at linear cost: a value stored over many records goes into the
controller's registers (derived records), so an unrolled repeat-until-success costs a few
registers per try instead of a table of 2^tries; the bound and what is cut off there; the pulse
controller's registers and conditional detection (sim/PROTOCOLS.md §9)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ionpilot.config import load_config
from ionpilot.sequencer import ScheduleError, compile_program, parse_qasm, validate_schedule
from ionpilot.sequencer.classical import REGISTER_ABOVE, Dyn, Registers, derived_values
from ionpilot.sequencer.qasm_program import QasmLimits
from ionpilot.sequencer.schedule import Schedule
from ionpilot.sim.clock import VirtualClock
from ionpilot.sim.instruments.ionpilot_pulser import Pulser
from ionpilot.sim.world import World

ROOT = Path(__file__).resolve().parents[2]
LAB = load_config(ROOT / "configs" / "sim-lab.yaml")
RUS = (Path(__file__).parent / "qasm" / "repeat_until_success_v3.qasm").read_text()


def test_a_wide_value_with_few_outcomes_goes_into_registers_that_compute_it():
    made = iter(range(100, 200))
    registers = Registers(lambda: next(made))
    records = tuple(range(8))
    table = tuple(int(i == 255) for i in range(256))  # all eight records read 1
    narrow = registers.compact(Dyn(records, table))
    assert narrow == Dyn((100,), (0, 1))
    ((record, inputs, accepted),) = registers.defined
    assert (record, inputs, accepted) == (100, records, (255,))
    assert derived_values(0b11111111, registers.defined) >> 100 == 1
    assert derived_values(0b01111111, registers.defined) >> 100 == 0
    # narrow enough, or as many outcomes as assignments: left as it is
    small = Dyn(records[:REGISTER_ABOVE], (0,) * (1 << REGISTER_ABOVE))
    assert registers.compact(small) is small
    distinct = Dyn(records, tuple(range(256)))
    assert registers.compact(distinct) is distinct


@pytest.mark.parametrize("bound", [8, 16, 32])
def test_repeat_until_success_costs_linear_in_its_bound(bound):
    """Each try adds a bounded number of records and registers, and no condition reads more
    than REGISTER_ABOVE + 1 records, however many tries are unrolled."""
    limits = QasmLimits(measured_while_iterations=bound, max_qubits=5)
    circuit = parse_qasm(RUS, device=LAB.device, limits=limits)
    widths = [len(op.condition[0]) for op in circuit.ops if op.condition is not None]
    assert max(widths) <= REGISTER_ABOVE + 1
    assert max(len(inputs) for _, inputs, _ in circuit.derived) <= REGISTER_ABOVE + 1
    assert len(circuit.derived) <= bound
    assert sum(op.name == "measure" for op in circuit.ops) == bound + 1  # each try, then out
    (truncation,) = circuit.truncations
    assert truncation[:2] == (14, bound)


def test_the_schedule_keeps_its_registers_and_the_validator_checks_what_they_read():
    program = compile_program(parse_qasm(RUS, device=LAB.device), LAB.device)
    schedule = program.schedule
    assert schedule.derived
    again = Schedule.loads(schedule.dumps())
    assert again.derived == schedule.derived
    validate_schedule(again, LAB.device)
    record, inputs, accepted = again.derived[0]
    again.derived[0] = (record, (*inputs[:-1], 999), accepted)
    with pytest.raises(ScheduleError, match="reads record 999, which no detection"):
        validate_schedule(again, LAB.device)


def _pulser(seed: int = 3) -> Pulser:
    return Pulser(World(dataclasses.replace(LAB.sim, seed=seed), VirtualClock()), "pulser")


def _run(pulser: Pulser, schedule: list[dict[str, Any]], shots: int = 200) -> dict[str, Any]:
    reply = json.loads(
        pulser.handle(json.dumps({"op": "run", "shots": shots, "schedule": schedule})) or b""
    )
    return dict(reply)


def _register_program(register_t_ns: int, read_t_ns: int) -> list[dict[str, Any]]:
    """Ion 0 put in |+>, read; a register says it read dark; ion 1 flipped and read only in
    the shots where the register is 1 (its detection conditional too)."""
    dark = {"bits": [["d0", 0]], "accept": [1], "threshold": 1}
    on_register = {"bits": ["dark0"], "accept": [1], "threshold": 1}
    return [
        {"t_ns": 0, "duration_ns": 5000, "channel": "raman", "amplitude": 1.0, "target": 0},
        {
            "t_ns": 10_000,
            "duration_ns": 300_000,
            "channel": "detect",
            "window": "d0",
            "per_ion": True,
            "ions": [0],
        },
        {"register": "dark0", "t_ns": register_t_ns, "condition": dark},
        {
            "t_ns": read_t_ns,
            "duration_ns": 10_000,
            "channel": "raman",
            "amplitude": 1.0,
            "target": 1,
            "condition": on_register,
        },
        {
            "t_ns": read_t_ns + 20_000,
            "duration_ns": 300_000,
            "channel": "detect",
            "window": "d1",
            "per_ion": True,
            "ions": [1],
            "condition": on_register,
        },
    ]


def test_the_controller_computes_registers_and_plays_conditional_detections():
    reply = _run(_pulser(), _register_program(311_000, 312_000))
    assert reply["ok"], reply
    result = reply["result"]
    assert result["windows"] == ["d0", "d1"]
    played = bright = 0
    for d0, d1 in result["counts"]:
        if d0[0] < 1:  # ion 0 read dark: ion 1 flipped, then read
            played += 1
            bright += d1[1] >= 1  # dark but for decay in the window and misreads (~1 %)
        else:  # not played: the window counts nothing
            assert d1 == [0] * len(d1)
    assert bright <= 5
    assert 60 <= played <= 140  # about half of 200


@pytest.mark.parametrize(
    ("register_t_ns", "read_t_ns", "code", "words"),
    [
        (310_500, 312_000, "out_of_range", "feedback latency is 1000 ns"),  # window just ended
        (311_000, 310_900, "out_of_range", "reads register 'dark0', computed only at 311000"),
    ],
)
def test_registers_respect_the_feedback_latency(register_t_ns, read_t_ns, code, words):
    reply = _run(_pulser(), _register_program(register_t_ns, read_t_ns), shots=2)
    assert not reply["ok"] and reply["error"]["code"] == code
    assert words in reply["error"]["message"]


def test_a_bad_register_or_a_conditional_cooling_is_refused_by_name():
    program = _register_program(311_000, 312_000)
    program[2] = {**program[2], "register": "d0"}  # a window's name
    reply = _run(_pulser(), program, shots=2)
    assert reply["error"]["code"] == "bad_request" and "not a window's" in reply["error"]["message"]
    program = _register_program(311_000, 312_000)
    program[3] = {**program[3], "condition": {"bits": ["nowhere"], "accept": [1]}}
    reply = _run(_pulser(), program, shots=2)
    assert "names no earlier register" in reply["error"]["message"]
    cool = {
        "t_ns": 400_000,
        "duration_ns": 1000,
        "channel": "cool",
        "condition": {"bits": [["d0", 0]], "accept": [1]},
    }
    reply = _run(_pulser(), [*_register_program(311_000, 312_000), cool], shots=2)
    assert "cooling cannot be conditional" in reply["error"]["message"]
