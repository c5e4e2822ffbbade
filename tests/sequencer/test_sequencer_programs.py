"""Our own OpenQASM 3 programs (tests/sequencer/qasm/*_v3.qasm, written from the language's
description) for what the dynamic and timed parts of the sequencer must get right: teleportation
with feed-forward, the semiclassical inverse QFT, a dynamical-decoupling box and a right-aligned
box whose stretches are read back from the schedule's event times, a repeat-until-success loop
walked shot by shot, and iterative phase estimation with a feedback angle computed in the shot."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from ionpilot.config import load_config
from ionpilot.sequencer import (
    QasmError,
    TrapBackend,
    compile_program,
    get_backend,
    parse_qasm,
    run_program,
    run_qasm,
)
from ionpilot.sequencer.qasm_program import NeedsShotByShot, QasmLimits
from ionpilot.sequencer.runner import qasm_limits, run_without_schedule
from ionpilot.sequencer.settings import DeviceSettings

ROOT = Path(__file__).resolve().parents[2]
QASM = Path(__file__).parent / "qasm"
V3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


@pytest.fixture(scope="module")
def device() -> DeviceSettings:
    settings: DeviceSettings = load_config(ROOT / "configs" / "sim-lab.yaml").device
    return settings


def _text(name: str) -> str:
    return (QASM / f"{name}_v3.qasm").read_text()


def _run(text: str, device: DeviceSettings, shots: int, seed: int = 5, ideal: bool = False):
    circuit = parse_qasm(text, device=device, limits=qasm_limits("sim", device))
    program = compile_program(circuit, device)
    backend = get_backend("sim", device, ideal=ideal)
    return program, run_program(program, backend, device, shots, seed)


def _share(counts: dict[str, int], field: int) -> float:
    """How often the `field`-th register of the counts' keys reads 1."""
    ones = sum(v for k, v in counts.items() if k.split()[field] == "1")
    return ones / sum(counts.values())


def test_teleported_bit_after_the_post_rotation_within_shot_noise(device):
    # ry(0.9)·rz(0.6)|0> sent, rz(-0.6) then ry(0.5) after: P(result = 1) = sin²(0.7)
    shots = 10_000
    p = math.sin(0.7) ** 2
    sigma = math.sqrt(p * (1 - p) / shots)
    _, ideal = _run(_text("teleport_post"), device, shots, ideal=True)
    assert abs(_share(ideal["counts"], 0) - p) <= 4 * sigma  # keys: result sent_x sent_z
    _, noisy = _run(_text("teleport_post"), device, shots)
    # the device's errors (readout, preparation, dephasing over two mid-circuit detections) add
    # up to ~1 %; beside that, shot noise
    assert abs(_share(noisy["counts"], 0) - p) <= 5 * sigma + 0.012
    # the Bell measurement is uniform: the corrections, not luck, make the result right
    for field in (1, 2):
        assert abs(_share(noisy["counts"], field) - 0.5) <= 5 * math.sqrt(0.25 / shots)
    # without the corrections the target is maximally mixed: P = 0.5, far from 0.415
    blind = _text("teleport_post").replace("if (sent_x == 1)", "if (false)")
    blind = blind.replace("if (sent_z == 1)", "if (false)")
    _, uncorrected = _run(blind, device, shots, ideal=True)
    assert abs(_share(uncorrected["counts"], 0) - 0.5) <= 4 * math.sqrt(0.25 / shots)


@pytest.mark.parametrize("k", range(8))
def test_inverse_qft_reads_back_the_phase_it_encodes(k, device):
    text = _text("inverse_qft_phase").replace("encoded = 5;", f"encoded = {k};")
    _, result = _run(text, device, 200, ideal=True)
    assert result["counts"] == {format(k, "03b"): 200}


def _gate_events(program, suffix: str) -> list:
    return sorted(
        (e for e in program.schedule.events if e.kind == "pulse" and e.name.endswith(suffix)),
        key=lambda e: e.start_mu,
    )


def test_echo_box_stretch_centres_the_pulses_at_odd_multiples_of_tau(device):
    program, _ = _run(_text("echo_box"), device, 10, ideal=True)
    grid = device.grid_mu
    pulses = _gate_events(program, ".q0")
    assert len(pulses) == 4
    others = [e for e in program.schedule.events if e.kind == "pulse" and e not in pulses]
    box_start = min(e.start_mu for e in others)
    box_end = max(e.end_mu for e in others)
    detect = min(e.start_mu for e in program.schedule.events if e.kind == "detect")
    assert detect >= box_end
    # the box is as long as its longest path (the entangling sequence on $1, $2), and the echo
    # fills it: its first delay starts with the box and its last delay ends with it
    length = box_end - box_start
    tau = length / 8
    y = pulses[0].duration_mu
    assert all(p.duration_mu == y for p in pulses)
    outer = pulses[0].start_mu - box_start
    inner = [b.start_mu - a.end_mu for a, b in itertools.pairwise(pulses)]
    last = box_end - pulses[-1].end_mu
    # outer = tau - y/2, inner = 2 tau - y, and the path is exactly the box
    assert abs(outer - (tau - 0.5 * y)) <= 2 * grid
    assert all(abs(g - (2 * tau - y)) <= 2 * grid for g in inner)
    assert abs(last - outer) <= 2 * grid
    assert abs(outer + sum(inner) + last + 4 * y - length) <= 2 * grid
    for j, pulse in enumerate(pulses):
        centre = (pulse.start_mu + pulse.end_mu) / 2 - box_start
        assert abs(centre - (2 * j + 1) * tau) <= 3 * grid
    assert min(outer, *inner) > 0


def test_right_aligned_box_ends_the_rotation_with_the_entangling_gates(device):
    program, _ = _run(_text("align_right"), device, 10, ideal=True)
    grid = device.grid_mu
    pair = [e for e in program.schedule.events if e.kind == "pulse" and ".q2" not in e.name]
    (rot,) = _gate_events(program, ".q2")
    t0 = min(e.start_mu for e in pair)
    t_end = max(e.end_mu for e in pair)
    detect = min(e.start_mu for e in program.schedule.events if e.kind == "detect")
    lead = rot.start_mu - t0
    assert lead > 0
    # lead + t_ry + 3 lead = the two entangling gates, and the barrier holds the readout after
    assert abs(lead + rot.duration_mu + 3 * lead - (t_end - t0)) <= 3 * grid
    assert abs((t_end - rot.end_mu) - 3 * lead) <= 3 * grid
    assert detect >= t_end


def test_repeat_until_success_compiles_to_a_bounded_loop_with_the_promised_statistics(device):
    """The while loop on the helper's reading is unrolled into conditional segments (its
    "still failing" kept in controller registers, so conditions stay small), cut off at the
    bound the limits state, and the result says what share of shots was cut off there."""
    text = _text("repeat_until_success")
    backend = get_backend("sim", device, ideal=True)
    shots = 4000
    result = run_qasm(text, backend, device, shots=shots, seed=3)
    assert "mode" not in result["compile"]  # a pulse schedule, not the shot-by-shot walker
    (cut,) = result["truncated"]
    bound = QasmLimits().measured_while_iterations
    assert cut["bound"] == bound and cut["line"] == 14
    # each try fails with probability sin²(phi / 4) = 0.32: the cut-off share is 0.32^16
    assert cut["fraction"] <= 1e-3 and cut["fraction_upper_95"] <= 2e-3
    assert sum(result["counts"].values()) == shots
    assert _share(result["counts"], 1) == 0  # every shot ends on success: `failed` reads 0
    p = math.sin(0.6) ** 2
    assert abs(_share(result["counts"], 0) - p) <= 5 * math.sqrt(p * (1 - p) / shots)


def test_a_loop_on_measurements_past_its_bound_is_cut_off_and_said_or_refused(device):
    # a loop that fails half the time, bounded at 3 tries: 1/8 of the shots are cut off
    text = V3 + (
        "qubit q;\nbit c = 1;\nwhile (c == 1) {\n  reset q;\n  h q;\n  c = measure q;\n}\n"
    )
    limits = QasmLimits(measured_while_iterations=3, max_qubits=5)
    program = compile_program(parse_qasm(text, device=device, limits=limits), device)
    result = run_program(program, get_backend("sim", device, ideal=True), device, 4000, 5)
    (cut,) = result["truncated"]
    assert cut["bound"] == 3 and cut["line"] == 5
    assert abs(cut["fraction"] - 0.125) <= 5 * math.sqrt(0.125 * 0.875 / 4000)
    assert (
        cut["shots"] == round(4000 * cut["fraction"]) and cut["fraction_upper_95"] > cut["fraction"]
    )
    strict = QasmLimits(measured_while_iterations=3, truncate_measured_loops=False)
    with pytest.raises(
        NeedsShotByShot, match=r"line 5.*still be running after 3 iterations.*truncation is off"
    ):
        parse_qasm(text, device=device, limits=strict)
    # refused for the trap; the simulator runs it shot by shot (and never cuts it off)
    with pytest.raises(QasmError, match="plays pulse schedules only"):
        run_without_schedule(
            text, NeedsShotByShot("bounded"), TrapBackend(device, None), device, shots=10, seed=1
        )


@pytest.mark.parametrize("numerator", [5, 3, 6])
def test_iterative_phase_estimation_reads_the_phase_through_feed_forward(numerator, device):
    text = _text("iterative_phase").replace("numerator = 5;", f"numerator = {numerator};")
    _, result = _run(text, device, 300, ideal=True)
    bits = {k.split()[1] for k in result["counts"]}
    assert bits == {format(numerator, "03b")}


def test_iterative_phase_estimation_compiled_agrees_with_the_walker(device):
    # a phase of 5.5/8 is not exact on three bits: the outcomes spread, and the compiled
    # conditional segments must give the same distribution as the shot-by-shot walker
    text = _text("iterative_phase").replace(
        "2 * pi * numerator / (1 << rounds)", "2 * pi * 5.5 / (1 << rounds)"
    )
    backend = get_backend("sim", device, ideal=True)
    shots = 1000
    scheduled = run_qasm(text, backend, device, shots=shots, seed=1)
    assert "shot by shot" not in str(scheduled["compile"].get("mode"))
    walked = run_without_schedule(
        text, NeedsShotByShot("cross-check"), backend, device, shots=shots, seed=2
    )
    for value in ("101", "110"):
        p = [
            sum(v for k, v in r["counts"].items() if k.split()[1] == value) / shots
            for r in (scheduled, walked)
        ]
        assert p[0] > 0.2
        assert abs(p[0] - p[1]) <= 6 * math.sqrt(0.25 * 2 / shots)
