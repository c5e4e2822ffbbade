"""OpenQASM 3 beyond the static subset: classical types and control flow, subroutines, switch,
externs, feed-forward on mid-circuit measurements (conditional segments, checked for both
branches and the feedback latency), timing (delay, box, stretch, durationof), OpenPulse
calibrations on the device's ports and frames, and the bounds checked before anything is built."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ionpilot.sequencer import (
    QasmError,
    ScheduleError,
    compile_program,
    get_backend,
    parse_qasm,
    run_program,
    validate_schedule,
)
from ionpilot.sequencer.classical import Dyn, lift, renumber
from ionpilot.sequencer.qasm_program import QasmLimits
from ionpilot.sequencer.settings import DeviceSettings

V3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
DEVICE = DeviceSettings()


def run(body: str, shots: int = 200, ideal: bool = True, seed: int = 1) -> dict[str, int]:
    program = compile_program(parse_qasm(V3 + body, device=DEVICE), DEVICE)
    backend = get_backend("sim", DEVICE, ideal=ideal)
    counts: dict[str, int] = run_program(program, backend, DEVICE, shots, seed)["counts"]
    return counts


def test_classical_types_casts_loops_break_and_continue():
    counts = run(
        "qubit[3] q; bit[3] c; int[8] k = -3; uint[4] u = 18; float x = 1.5; bool b = true;\n"
        "angle[4] a = pi / 2; const int[32] N = 2; array[int[8], 3] arr = {1, 2, 3};\n"
        "if (k == -3 && u == 2 && b && arr[2] == 3 && int[4](a) == 4) x q[0];\n"
        "for int i in {1, 2} { if (i == N) x q[1]; }\n"
        "int s = 0; for int i in [0:4] { if (i == 3) break; if (i == 1) continue; s += i; }\n"
        "if (s == 2 && x * 2 == 3.0) x q[2];\nc = measure q;\n"
    )
    # uint[4] wraps 18 to 2; angle[4] holds pi/2 as 4/16 of a turn; the loop sums 0 + 2
    assert counts == {"111": 200}


def test_subroutines_take_qubits_and_classical_arguments_and_return():
    counts = run(
        "def flip(qubit r, int[8] times) -> int[8] { for int i in [1:times] { x r; } "
        "return times * 2; }\n"
        "qubit[2] q; bit[2] c; int[8] r = flip(q[0], 3); if (r == 6) x q[1]; c = measure q;\n"
    )
    assert counts == {"11": 200}


def test_switch_on_a_known_and_on_a_measured_value():
    assert run(
        "qubit[2] q; bit[2] c; int k = 2;\n"
        "switch (k) { case 1 { x q[0]; } case 2, 3 { x q[1]; } default { x q[0]; x q[1]; } }\n"
        "c = measure q;\n"
    ) == {"10": 200}
    counts = run(
        "qubit[2] q; bit[2] c; bit m; h q[0]; m = measure q[0];\n"
        "switch (int(m)) { case 0 { x q[1]; } default { } }\nc = measure q;\n"
    )
    # q[1] is flipped exactly when m read 0
    assert set(counts) == {"0 10", "1 01"}


def test_if_else_on_a_measurement_takes_exactly_one_branch():
    counts = run(
        "qubit[2] q; bit[2] c; h q[0]; c[0] = measure q[0];\n"
        "if (c[0] == 1) { x q[1]; } else { h q[1]; h q[1]; }\nc[1] = measure q[1];\n"
    )
    assert set(counts) == {"00", "11"}
    assert abs(counts["11"] - 100) < 40


def test_while_on_a_measurement_unrolls_into_conditional_segments():
    counts = run(
        "qubit q; bit c = 1; int[4] n = 0;\n"
        "while (c == 1 && n < 4) { h q; c = measure q; n += 1; }\n",
        shots=2000,
    )
    # the loop stops at the first 0, or after four tries: n = k with probability 2^-k
    by_n: dict[int, int] = {}
    for key, v in counts.items():
        n = int(key.split()[0], 2)
        by_n[n] = by_n.get(n, 0) + v
    for n, p in ((1, 0.5), (2, 0.25), (3, 0.125), (4, 0.125)):
        assert abs(by_n[n] / 2000 - p) <= 5 * math.sqrt(p * (1 - p) / 2000)


def test_gate_parameter_from_a_measurement_and_an_offered_extern():
    assert set(
        run(
            "qubit[2] q; bit c; bit[2] d; h q[0]; c = measure q[0];\n"
            "float th = pi * int(c); rx(th) q[1]; d = measure q;\n"
        )
    ) == {"00 0", "11 1"}
    assert run(
        "extern vote(bit[3]) -> bit; qubit[4] q; bit[3] c; bit r; x q[0]; x q[1];\n"
        "c = measure q[0:2]; r = vote(c); if (r == 1) x q[3]; r = measure q[3];\n"
    ) == {"1 011": 200}


def test_feed_forward_with_noise_agrees_with_the_branch_by_branch_simulator():
    # the same statistics from the static path (mid-circuit measurement, followed branch by
    # branch) and the shot-by-shot path (forced by a condition that is always true)
    body = "qubit[2] q; bit[3] c; h q[0]; cx q[0], q[1]; c[0] = measure q[0]; ry(0.8) q[1];\n"
    static = run(body + "c[1] = measure q[1];\n", shots=4000, ideal=False, seed=2)
    dynamic = run(
        body + "if (c[0] == 0 || c[0] == 1) { x q[1]; }\nx q[1];\nc[1] = measure q[1];\n",
        shots=4000,
        ideal=False,
        seed=3,
    )
    for key in set(static) | set(dynamic):
        p = (static.get(key, 0) + dynamic.get(key, 0)) / 8000
        sigma = math.sqrt(max(p * (1 - p), 1e-4) / 4000)
        assert abs(static.get(key, 0) - dynamic.get(key, 0)) / 4000 <= 6 * sigma


def test_conditional_events_wait_for_the_feedback_latency_and_both_branches_are_checked():
    program = compile_program(
        parse_qasm(V3 + "qubit q; bit c; c = measure q; if (c == 1) x q;\n"), DEVICE
    )
    events = program.schedule.events
    detect = next(e for e in events if e.kind == "detect")
    (branch,) = [e for e in events if e.condition is not None]
    assert branch.condition == ((0,), (1,))
    assert branch.start_mu - detect.end_mu >= DEVICE.feedback_latency / DEVICE.time_unit
    early = dataclasses.replace(branch, start_mu=detect.end_mu)
    program.schedule.events[events.index(branch)] = early
    with pytest.raises(ScheduleError) as info:
        validate_schedule(program.schedule, DEVICE)
    assert "feedback latency" in str(info.value) and early.name in info.value.event_names
    # a conditional pulse colliding with an unconditional one is refused (taken branch)
    clash = dataclasses.replace(branch, name="clash", condition=None)
    program.schedule.events[events.index(early)] = branch
    program.schedule.events.append(clash)
    with pytest.raises(ScheduleError, match="overlaps"):
        validate_schedule(program.schedule, DEVICE)


def test_delay_box_and_durationof_become_schedule_timing():
    program = compile_program(
        parse_qasm(
            V3 + "stretch a; qubit[2] q; bit[2] c;\n"
            "box[300us] { x q[0]; delay[a] q[0]; delay[100us] q[1]; x q[1]; }\nc = measure q;\n",
            device=DEVICE,
        ),
        DEVICE,
    )
    events = {e.name.rsplit(".", 1)[-1]: e for e in program.schedule.events if ".r." in e.name}
    start = program.schedule.events[1].end_mu
    detect = next(e for e in program.schedule.events if e.kind == "detect")
    us = 1e-6 / DEVICE.time_unit
    assert events["q1"].start_mu - start == pytest.approx(100 * us, abs=DEVICE.grid_mu)
    assert detect.start_mu - start == pytest.approx(300 * us, abs=DEVICE.grid_mu)
    x_mu = events["q0"].duration_mu
    circuit = parse_qasm(
        V3 + "qubit q; bit c; duration d = durationof({x q;});\n"
        f"if (d == {x_mu}ns) x q;\nc = measure q;\n",
        device=DEVICE,
    )
    assert [op.name for op in circuit.ops] == ["x", "measure"]


def test_impossible_stretch_and_box_are_refused():
    with pytest.raises(QasmError, match="cannot be solved"):
        parse_qasm(V3 + "stretch a; qubit[2] q; box[10us] { delay[100us] q[1]; delay[a] q[0]; }\n")


def test_defcal_on_the_device_frames_plays_its_own_pulses():
    counts = run(
        'defcalgrammar "openpulse";\n'
        "cal { port raman_addr_0; frame f = newframe(raman_addr_0, 110e6, 0); }\n"
        "defcal x $0 { play(f, constant(20us, 1.0)); }\nbit c; x $0; c = measure $0;\n"
    )
    assert counts == {"1": 200}  # 2π · 25 kHz · 20 us = π
    program = compile_program(
        parse_qasm(
            V3 + 'defcalgrammar "openpulse";\n'
            "defcal x $0 { shift_phase(q0, pi / 2); play(q0, constant(10us, 0.5)); }\n"
            "bit c; x $0; c = measure $0;\n"
        ),
        DEVICE,
    )
    (pulse,) = [e for e in program.schedule.events if ".cal" in e.name]
    assert pulse.channel == "raman_addr_0" and pulse.duration_mu == 10_000
    assert pulse.amplitude == 0.5 and pulse.phase_rad == pytest.approx(math.pi / 2)


def test_defcal_measure_sets_the_detection_window_by_capture():
    program = compile_program(
        parse_qasm(
            V3 + 'defcalgrammar "openpulse";\n'
            "defcal measure $0 -> bit { return capture(detect, 120us); }\n"
            "bit[2] c; x $0; x $1; c[0] = measure $0; c[1] = measure $1;\n"
        ),
        DEVICE,
    )
    windows = [e for e in program.schedule.events if e.kind == "detect"]
    assert [(e.qubits, e.duration_mu) for e in windows] == [
        ((0,), 120_000),
        ((1,), round(DEVICE.detection_duration / DEVICE.time_unit)),
    ]


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("cal { port drive; }\n", 4, "port 'drive' is not one of the device's ports"),
        ("defcal x $0 { play(d0, constant(20us, 1.0)); }\nx $0;\n", 4, "frame 'd0' is not"),
        (
            "defcal x $0 { play(q0, gaussian(20us, 1.0, 3us)); }\nx $0;\n",
            4,
            "waveform 'gaussian' is not offered",
        ),
        ("defcal x $0 { capture(q0, 20us); }\nx $0;\n", 4, "capture is offered only as"),
        (
            "defcal measure $0 -> bit { return capture(q0, 120us); }\n",
            4,
            "capture on a frame of port 'raman_addr_0'",
        ),
    ],
)
def test_calibrations_off_the_device_are_refused_by_name(body, line, words):
    with pytest.raises(QasmError) as info:
        parse_qasm(V3 + 'defcalgrammar "openpulse";\n' + body)
    assert words in str(info.value)
    assert info.value.line == line and info.value.column is not None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("qubit q;\nfor int i in [0:19999999] { x q; }\n", "20000000 elements; the limit is"),
        ("qubit[100000000] q;\n", "declares 100000000 or more qubits"),
        ("array[int[8], 100000, 100000] a;\n", "array of 100000 or more elements"),
        ("qubit q;\nbit[1000000] c;\n", "width must be 1..4096"),
        ("int x = 1 << 1000000000000;\n", "wider than 4096 bits"),
        ("int x = 3 ** 1000000000000;\n", "wider than 4096 bits"),
        ("int x = 1;\nx = y + 1;\n", "undeclared identifier 'y'"),
        ("const int n = 2;\nn = 3;\n", "'n' is a constant"),
        ("int[8] k;\ndef f() { k = 1; }\nf();\n", "'k' is a global variable"),
    ],
)
def test_inputs_are_bounded_before_anything_is_built(body, words):
    with pytest.raises(QasmError) as info:
        parse_qasm(V3 + body)
    assert words in str(info.value)
    assert info.value.line is not None and info.value.column is not None


def test_nested_classical_loops_stop_at_the_statement_budget():
    body = "int k = 0;\nfor int i in [0:999999] { for int j in [0:999999] { k += 1; } }\n"
    with pytest.raises(QasmError, match="more than 5000 statements") as info:
        parse_qasm(V3 + body, limits=QasmLimits(statements=5000))
    assert info.value.line == 4


def test_run_time_values_are_tables_over_records():
    a, b = Dyn.record(3), Dyn.record(7)
    both = lift(lambda x, y: x + 2 * y, a, b)
    assert both == Dyn((3, 7), (0, 1, 2, 3))
    assert lift(lambda x: x * 0, a) == 0  # constant tables collapse
    swapped = renumber(both, lambda r: 10 - r)  # 3 -> 7, 7 -> 3: the table follows
    assert swapped == Dyn((3, 7), (0, 2, 1, 3))


def test_device_description_states_externs_feedback_and_pulse_instructions():
    from ionpilot.sequencer import describe_device

    doc = describe_device(DEVICE)
    action = doc["action"]["braket.ir.openqasm.program"]
    assert set(action["supportedExterns"]) == {"vote", "parity"}
    assert action["feedbackLatency"] == DEVICE.feedback_latency
    assert "capture" in doc["pulse"]["supportedFunctions"]
