"""The OpenQASM specification's own example programs (tests/sequencer/qasm/spec, Apache-2.0, see
the NOTICE there) through `ionpilot run-qasm --backend sim` on a 22-ion device: each runs, or is
refused for the reason that is really wrong with it. Then what the dynamic ones compute
(teleportation, inverse QFT, syndrome correction) and how the timed ones are scheduled (the
stretch equations of alignment.qasm and dd.qasm, read from the schedule's event times)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from ionpilot.cli import main
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
from ionpilot.sequencer.qasm_program import NeedsShotByShot
from ionpilot.sequencer.runner import qasm_limits, run_without_schedule
from ionpilot.sequencer.settings import DeviceSettings

ROOT = Path(__file__).resolve().parents[2]
SPEC = Path(__file__).parent / "qasm" / "spec"
IONS = 22

RUNS = {
    "alignment",
    "gateteleport",
    "inverseqft1",
    "inverseqft2",
    "ipe",
    "qec",
    "qft",
    "qpt",
    "rb",
    "rus",
    "teleport",
    "varteleport",
}
# file -> what the refusal must say (each is what is really wrong with the file)
REFUSED = {
    "adder": ["line 20", "syntax error", "qubit[4] a;"],  # `qubit cin[1], a[4]` is OpenQASM 2 form
    "arrays": ["line 51", "index 4 out of range for size 4"],  # my_defined_uints[a - 1], a = 5
    "cphase": ["'CX' is not defined in OpenQASM 3", "register 'q' is never declared"],
    "dd": ["line 26", "undefined gate 'u'"],  # `u $3;` names no gate of stdgates.inc
    "defcal": ["line 11", "token recognition error at: ':'"],  # `angle[20]:theta`, `$q`
    "msd": ["33 or more qubits", "more qubits than a state vector of the simulator can hold"],
    "scqec": ["extern 'zfirst' is not offered by this device"],
    "t1": ["line 22", "token recognition error at: '$q'"],
    "vqe": ["line 24", "syntax error", "fixed"],  # `fixed[prec, prec]` is no OpenQASM 3 type
}


def _lab_file(tmp: Path) -> Path:
    """The simulated lab's file with a 22-ion processor (an addressed beam per ion)."""
    lines = [f"include: {ROOT / 'configs' / 'sim-lab.yaml'}", "device:", "  ions: 22"]
    lines.append("  channels:")
    for ion in range(5, IONS):
        lines.append(
            f"    raman_addr_{ion}: {{kind: beam_addressed, ion: {ion}, aom_center_frequency: "
            "110 MHz, aom_bandwidth: 20 MHz, rabi_frequency: 50 kHz}"
        )
    path = tmp / "lab22.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def lab22(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lab_file(tmp_path_factory.mktemp("spec"))


@pytest.fixture(scope="module")
def device22(lab22: Path) -> DeviceSettings:
    device: DeviceSettings = load_config(lab22).device
    return device


def test_every_example_is_kept_with_its_licence():
    names = {p.stem for p in SPEC.glob("*.qasm")}
    assert names == RUNS | set(REFUSED) and len(names) == 21
    assert "Apache License" in (SPEC / "LICENSE").read_text()
    assert "openqasm/openqasm" in (SPEC / "NOTICE").read_text()


@pytest.mark.parametrize("name", sorted(RUNS | set(REFUSED)))
def test_spec_example_runs_or_is_refused_for_what_is_wrong(name, lab22, capsys):
    path = SPEC / f"{name}.qasm"
    argv = ["run-qasm", str(path), "--backend", "sim", "--config", str(lab22)]
    code = main([*argv, "--shots", "200", "--seed", "1", "--json"])
    out, err = capsys.readouterr()
    if name in RUNS:
        assert code == 0, err
        result = json.loads(out)
        assert sum(result["counts"].values()) == 200
        return
    assert code == 2, out
    for fragment in REFUSED[name]:
        assert fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def _run(text: str, device: DeviceSettings, shots: int, seed: int = 5, ideal: bool = False):
    circuit = parse_qasm(text, device=device, limits=qasm_limits("sim", device))
    program = compile_program(circuit, device)
    backend = get_backend("sim", device, ideal=ideal)
    return program, run_program(program, backend, device, shots, seed)


def test_teleport_delivers_the_state_it_was_given(device22):
    # U(0.3, 0.2, 0.1)|0> has P(1) = sin²(0.15); c2 after `post` (identity) must show it
    shots = 10_000
    p = math.sin(0.15) ** 2
    _, ideal = _run((SPEC / "teleport.qasm").read_text(), device22, shots, ideal=True)
    ones = sum(v for k, v in ideal["counts"].items() if k.split()[0] == "1")
    assert abs(ones / shots - p) <= 4 * math.sqrt(p * (1 - p) / shots)  # shot noise alone
    _, result = _run((SPEC / "teleport.qasm").read_text(), device22, shots)
    ones = sum(v for k, v in result["counts"].items() if k.split()[0] == "1")
    # with the device's errors (readout 0.2-0.6 %, preparation, dephasing over three mid-circuit
    # detections) c2 may read 1 up to ~1 % more often; 5 σ of shot noise beside that
    assert abs(ones / shots - p) <= 5 * math.sqrt(p * (1 - p) / shots) + 0.012
    # and c0, c1 are uniform: the corrections, not luck, make c2 right
    c0 = sum(v for k, v in result["counts"].items() if k.split()[2] == "1")
    assert abs(c0 / shots - 0.5) <= 5 * math.sqrt(0.25 / shots)


def test_teleport_with_a_post_rotation_sees_the_phase(device22):
    # post = ry(-0.3)·rz(-0.2) undoes U(0.3, 0.2, 0.1) up to a phase: c2 must read 0
    text = (SPEC / "teleport.qasm").read_text()
    text = text.replace("gate post q { }", "gate post q { rz(-0.2) q; ry(-0.3) q; }")
    _, result = _run(text, device22, 2000, ideal=True)
    assert all(k.split()[0] == "0" for k in result["counts"])


@pytest.mark.parametrize("name", ["inverseqft1", "inverseqft2"])
def test_inverse_qft_gives_the_phase_it_encodes(name, device22):
    # h on |0000> is the QFT of phase 0: the semiclassical inverse QFT must read 0000 every shot
    _, result = _run((SPEC / f"{name}.qasm").read_text(), device22, 1000, ideal=True)
    assert set(result["counts"]) == {"0000" if name == "inverseqft1" else "0 0 0 0"}


@pytest.mark.parametrize("phase", [3, 5, 10, 13])
def test_inverse_qft_reads_a_nonzero_phase(phase, device22):
    # the same programme on the QFT of |phase>: each feed-forward rotation must be right
    text = (SPEC / "inverseqft2.qasm").read_text()
    prep = "h q;\n" + "".join(
        f"rz({-2 * math.pi * phase * 2**j / 16!r}) q[{3 - j}];\n" for j in range(4)
    )
    text = text.replace("h q;\n", prep, 1)
    _, result = _run(text, device22, 500, ideal=True)
    (key,) = result["counts"]
    bits = [int(b) for b in reversed(key.split())]  # c0 (the least significant bit) first
    assert sum(b << j for j, b in enumerate(bits)) == phase


def test_qec_corrects_the_inserted_error(device22):
    _, result = _run((SPEC / "qec.qasm").read_text(), device22, 1000, ideal=True)
    assert result["counts"] == {"01 000": 1000}


def _events(program, prefix: str) -> list:
    return sorted(
        (e for e in program.schedule.events if e.name.startswith("g") and prefix in e.name),
        key=lambda e: e.start_mu,
    )


def test_alignment_stretch_aligns_the_delays_with_the_cnot(device22):
    program, _ = _run((SPEC / "alignment.qasm").read_text(), device22, 10, ideal=True)
    unit = device22.time_unit
    grid = device22.grid_mu
    cx = [e for e in program.schedule.events if ".q0" in e.name or ".q1" in e.name]
    t0 = min(e.start_mu for e in cx)
    t_end = max(e.end_mu for e in cx)
    (u,) = [e for e in program.schedule.events if e.name.endswith(".q2")]
    detect = next(e for e in program.schedule.events if e.kind == "detect")
    g = u.start_mu - t0
    # delay[g]; U; delay[2g] spans exactly the CNOT: g + t_U + 2g = t_cx, and the barrier after
    assert g > 0
    assert abs((detect.start_mu - u.end_mu) - 2 * g) <= 2 * grid
    assert abs(g + u.duration_mu + 2 * g - (t_end - t0)) <= 3 * grid
    assert detect.start_mu == t_end
    assert unit > 0


def test_dd_stretches_satisfy_the_specification_equations(device22):
    # dd.qasm less its `u $3;` (no such gate): the XY4 train on $0 spans the box, whose length
    # is set by the two CNOTs on $1..$3; the delays follow start = -x/2 + s, middle = -x/2 - 5y
    # + s, end = -y/2 + s with one s
    text = (SPEC / "dd.qasm").read_text().replace("  u $3;\n", "")
    program, _ = _run(text, device22, 10, ideal=True)
    pulses = [e for e in program.schedule.events if e.name.endswith(".q0")]
    assert len(pulses) == 4
    x, y = pulses[0].duration_mu, pulses[1].duration_mu
    box_start = program.schedule.events[1].end_mu  # after cooling and preparation
    others = [e for e in program.schedule.events if e.name.startswith("g") and ".q0" not in e.name]
    assert others
    box_end = next(e for e in program.schedule.events if e.kind == "detect").start_mu
    gaps = [pulses[0].start_mu - box_start]
    gaps += [b.start_mu - a.end_mu for a, b in itertools.pairwise(pulses)]
    gaps.append(box_end - pulses[-1].end_mu)
    grid = device22.grid_mu
    s = gaps[0] + 0.5 * x
    assert abs(gaps[1] - (-0.5 * x - 5 * y + s)) <= 2 * grid
    assert abs(gaps[2] - gaps[1]) <= 2 * grid and abs(gaps[3] - gaps[1]) <= 2 * grid
    assert abs(gaps[4] - (-0.5 * y + s)) <= 2 * grid
    assert min(gaps) >= 0
    # and $0's path (delays plus pulses) is the box: the stretch closed it
    assert abs(sum(gaps) + 2 * x + 2 * y - (box_end - box_start)) <= 6 * grid


def test_repeat_until_success_runs_shot_by_shot_and_agrees_with_the_schedule(device22):
    # rus.qasm loops until its ancillas read 00: no pulse schedule holds that, so the simulator
    # walks it shot by shot. Bounded to five tries it also compiles to conditional segments;
    # both ways must give the same statistics of output_qubit.
    text = (SPEC / "rus.qasm").read_text()
    bounded = text.replace(
        "while(int[2](flags) != 0) {",
        "int[4] n = 0;\nwhile(int[2](flags) != 0 && n < 5) { n += 1;",
    )
    backend = get_backend("sim", device22, ideal=True)
    scheduled = run_qasm(bounded, backend, device22, shots=800, seed=1)
    assert scheduled["compile"]["native_counts"]  # it went through the pulse schedule
    walked = run_without_schedule(
        bounded, NeedsShotByShot("bounded"), backend, device22, shots=800, seed=2
    )
    free = run_qasm(text, backend, device22, shots=800, seed=3)
    assert "shot by shot" in free["compile"]["mode"]

    def ones(result: dict, index: int) -> float:
        hits = sum(v for k, v in result["counts"].items() if k.split()[index] == "1")
        return hits / result["shots"]

    p_sched, p_walk, p_free = ones(scheduled, 1), ones(walked, 1), ones(free, 0)
    sigma = math.sqrt(0.1 * 0.9 / 800)
    assert abs(p_sched - p_walk) <= 6 * sigma and abs(p_free - p_walk) <= 6 * sigma
    with pytest.raises(QasmError, match="plays pulse schedules only"):
        run_qasm(text, TrapBackend(device22, None), device22, shots=10)


def test_ipe_feed_forward_angles_agree_with_the_shot_by_shot_walker(device22):
    # ipe.qasm builds an angle from measured bits and feeds it into `inv @ phase(c)`: compiled,
    # that is 1,023 conditional segments with physical frame corrections; walked shot by shot,
    # plain numbers and gate matrices. Every bit of c must have the same statistics both ways.
    text = (SPEC / "ipe.qasm").read_text()
    backend = get_backend("sim", device22, ideal=True)
    shots = 300
    scheduled = run_qasm(text, backend, device22, shots=shots, seed=1)
    walked = run_without_schedule(
        text, NeedsShotByShot("cross-check"), backend, device22, shots=shots, seed=2
    )
    for bit in range(10):
        p = [
            sum(v for k, v in r["counts"].items() if k[9 - bit] == "1") / shots
            for r in (scheduled, walked)
        ]
        mean = (p[0] + p[1]) / 2
        assert abs(p[0] - p[1]) <= 6 * math.sqrt(max(mean * (1 - mean), 0.01) * 2 / shots)
