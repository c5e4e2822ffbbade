"""The trap backend: schedules translated to the pulse controller's pulses (and refused where it
cannot play them), counts read back as bits, and circuits run on a live simulated lab through the
driver host on the bus, with outcome statistics checked against binomial bounds."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labprocs import live_lab, wait_for  # type: ignore[import-not-found]

from ionpilot.bus.client import CommandClient
from ionpilot.bus.settings import BusSettings
from ionpilot.cli import main
from ionpilot.config import load_config
from ionpilot.drivers.host import DriverHost
from ionpilot.sequencer import (
    BackendUnavailable,
    Circuit,
    JobQueue,
    PulseEvent,
    Schedule,
    SequencerError,
    TrapBackend,
    TrapTranslationError,
    clock_interrogation,
    compile_program,
    execute_job,
    get_backend,
    parse_qasm,
    run_program,
    translate_schedule,
)
from ionpilot.sequencer.service import SequencerService
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.trap import BusPulserLink, decode_counts
from ionpilot.sim.clock import RealClock
from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import SimSettings

ROOT = Path(__file__).resolve().parents[2]
LAB_FILE = ROOT / "configs" / "sim-lab.yaml"
QASM_DIR = Path(__file__).parent / "qasm"
V3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
BELL = V3 + "qubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n"


def lab_device() -> DeviceSettings:
    device: DeviceSettings = load_config(LAB_FILE).device
    return device


def binomial_ok(k: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """k successes in n trials is within `sigmas` standard deviations (plus 1 %) of n·p."""
    return abs(k / n - p) <= sigmas * math.sqrt(p * (1 - p) / n) + 0.01


# --- translation, without a lab ------------------------------------------------------------


def test_lab_file_device_matches_the_simulated_lab():
    device = lab_device()
    clock = device.channels[device.clock_channel]
    assert clock.aom_center_frequency == 200e6  # the live clock AOM (PROTOCOLS §9 power-on)
    assert clock.rabi_frequency == 25.0  # the sim's clock Rabi frequency at amplitude 1
    assert all(
        ch.rabi_frequency == 50e3
        for ch in device.channels.values()
        if ch.kind.startswith("beam_") and ch is not clock
    )
    assert device.ms_gate.duration == pytest.approx(200e-6)


def test_bell_translates_to_controller_pulses():
    device = lab_device()
    program = compile_program(parse_qasm(BELL), device)
    out = translate_schedule(program.schedule, device)
    channels = [p["channel"] for p in out.pulses]
    assert channels[:2] == ["cool", "repump"] and channels[-1] == "detect"
    (ms,) = [p for p in out.pulses if p["channel"] == "ms"]
    assert ms["targets"] == [0, 1] and ms["duration_ns"] == 200_000
    # the full-power 200 µs MS gate is θ = π/2 at amplitude 1 on the controller too
    assert ms["amplitude"] == pytest.approx(1.0)
    raman = [p for p in out.pulses if p["channel"] == "raman"]
    assert {p["target"] for p in raman} == {0, 1}
    for p in raman:  # θ = 2π·50 kHz·a·t: the Clifford rotations of H and CNOT, k·π/2
        quarter_turns = 4 * 50e3 * p["amplitude"] * p["duration_ns"] * 1e-9
        assert quarter_turns == pytest.approx(round(quarter_turns)) and quarter_turns >= 1
    assert out.pulses[-1]["per_ion"] is True
    assert [(r.qubits, r.clbits) for r in out.readouts] == [((0, 1), (0, 1))]
    assert [p["t_ns"] for p in out.pulses] == sorted(p["t_ns"] for p in out.pulses)
    json.dumps(out.pulses)  # plain data for the bus


def test_clock_interrogation_translates_to_a_clock_pulse():
    device = lab_device()
    out = translate_schedule(clock_interrogation(device, "rabi", 80e-3, 12.0), device)
    (probe,) = [p for p in out.pulses if p["channel"] == "clock"]
    assert probe["frequency_hz"] == pytest.approx(200e6 + 12.0)
    assert probe["duration_ns"] == 80_000_000
    # a π pulse: 25 Hz · amplitude · 80 ms = 1/2
    assert 25.0 * probe["amplitude"] * 0.08 == pytest.approx(0.5)


def _schedule(events: list[PulseEvent], qubits: int = 2) -> Schedule:
    device = lab_device()
    cool = PulseEvent("cool", "cool_369", 0, 1_000_000, kind="ttl")
    return Schedule(qubits, qubits, [cool, *events], time_unit_s=device.time_unit)


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (
            PulseEvent(
                "detuned",
                "raman_addr_0",
                1_000_000,
                10_000,
                amplitude=0.5,
                frequency_hz=111e6,
                frames=("q0",),
            ),
            "resonant only",
        ),
        (PulseEvent("shutter", "repump_935", 1_000_000, 2_000_000, kind="ttl"), "no counterpart"),
    ],
)
def test_what_the_controller_cannot_do_is_refused_by_name(event, words):
    device = lab_device()
    with pytest.raises(TrapTranslationError) as refused:
        translate_schedule(_schedule([event]), device)
    assert refused.value.problems[0][0] == event.name
    assert words in str(refused.value)


def test_a_partial_detection_reads_its_ions_and_hides_the_others():
    """Mid-circuit measurement: the detection names the ions it reads (the controller hides the
    others from the light, PROTOCOLS §10), so a later gate on an unread qubit is fine."""
    device = lab_device()
    events = [
        PulseEvent("m0", "pmt", 1_000_000, 300_000, kind="detect", qubits=(0,), clbits=(0,)),
        PulseEvent("x1", "raman_addr_1", 1_300_000, 10_000, amplitude=1.0, frequency_hz=110e6),
    ]
    pulses = translate_schedule(_schedule(events), device).pulses
    detect = next(p for p in pulses if p["channel"] == "detect")
    assert detect["ions"] == [0] and detect["window"] == "m0"
    assert any(p["channel"] == "raman" and p.get("target") == 1 for p in pulses)
    # a reset of some qubits pumps only those ions
    reset = PulseEvent("r0", "pump_369", 1_400_000, 20_000, kind="pump", qubits=(0,))
    pulses = translate_schedule(_schedule([*events, reset]), device).pulses
    assert next(p for p in pulses if p["channel"] == "repump")["ions"] == [0]


def test_counts_become_bits_with_the_device_threshold():
    device = lab_device()
    program = compile_program(parse_qasm(BELL), device)
    out = translate_schedule(program.schedule, device)
    window = out.readouts[0].window
    reply = {"windows": [window], "counts": [[[7, 0]], [[0, 5]], [[0, 0]], [[3, 2]]]}
    # bright (>= 1 photon) is |0>; bit 0 is qubit 0
    assert decode_counts(out, reply, 4, threshold=1) == {0b10: 1, 0b01: 1, 0b11: 1, 0b00: 1}
    assert decode_counts(out, reply, 4, threshold=4) == {0b10: 1, 0b01: 1, 0b11: 2}
    with pytest.raises(SequencerError, match="no window"):
        decode_counts(out, {"windows": ["other"], "counts": reply["counts"]}, 4, 1)


class FakeLink:
    """A pulse controller that answers every ion bright and records the calls."""

    def __init__(self, ions: int = 2) -> None:
        self.ions = ions
        self.calls: list[tuple[int, float]] = []
        self.described = 0
        self.refuse_next_run = False

    def describe(self) -> dict[str, Any]:
        self.described += 1
        return {"n_ions": self.ions, "limits": {"dds_frequency_hz": [1e6, 4e8], "max_shots": 300}}

    def run(self, shots: int, pulses: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
        self.calls.append((shots, timeout_s))
        if self.refuse_next_run:
            self.refuse_next_run = False
            raise BackendUnavailable("trap backend: pulser: not connected")
        windows = [p["window"] for p in pulses if "window" in p]
        per_shot = [[9] * self.ions for _ in windows]  # every ion bright in every window
        return {"windows": windows, "counts": [per_shot for _ in range(shots)]}


def test_long_runs_are_split_into_bounded_calls():
    device = lab_device()
    link = FakeLink()
    backend = TrapBackend(device, link, max_call_s=0.5)
    program = compile_program(parse_qasm(BELL), device)
    result = run_program(program, backend, device, shots=1000)
    assert result["counts"] == {"00": 1000}
    shots = [n for n, _ in link.calls]
    assert sum(shots) == 1000 and max(shots) <= 300  # the controller's max_shots
    assert all(n * program.report.estimated_duration_s <= 0.5 + 1e-9 for n in shots)


def test_the_controllers_description_is_kept_until_a_call_fails_or_the_chain_changes():
    """Asked once, not per job (it waits behind the clock servo's run on the controller); asked
    again after a failed call, and when a run's per-ion counts show another number of ions."""
    device = lab_device()
    link = FakeLink(ions=5)
    backend = TrapBackend(device, link)
    program = compile_program(parse_qasm(BELL), device)
    for _ in range(3):
        assert run_program(program, backend, device, shots=100)["counts"] == {"00": 100}
    clock = Schedule.loads(clock_interrogation(device, "rabi", 80e-3, 12.0).dumps())
    backend.play(clock, 5)  # the servo's clock jobs use the kept description too
    assert link.described == 1
    link.refuse_next_run = True
    with pytest.raises(BackendUnavailable, match="not connected"):
        run_program(program, backend, device, shots=100)
    run_program(program, backend, device, shots=100)
    assert link.described == 2  # asked again after the failed call
    link.ions = 1  # a chain of another size than described: forgotten at the next reply
    with pytest.raises(SequencerError, match="per-ion counts"):
        run_program(program, backend, device, shots=100)
    with pytest.raises(SequencerError, match="holds 1 ion"):
        run_program(program, backend, device, shots=100)
    assert link.described == 3


def test_more_qubits_than_ions_and_no_link_are_refused():
    device = lab_device()
    program = compile_program(parse_qasm(V3 + "qubit[3] q;\nh q;\n"), device)
    with pytest.raises(SequencerError, match="holds 2 ion"):
        run_program(program, TrapBackend(device, FakeLink(2)), device, shots=10)
    with pytest.raises(BackendUnavailable, match="trap backend"):
        run_program(program, TrapBackend(device), device, shots=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def lab_file_for(
    tmp_path: Path, bus: BusSettings, drivers_port: int, sequencer_port: int | None = None
) -> Path:
    """The lab file with the bus, the driver host and the sequencer service moved to the given
    (else free) ports."""
    text = LAB_FILE.read_text()
    text = re.sub(r"publish_port: \d+", f"publish_port: {bus.publish_port}", text)
    text = re.sub(r"subscribe_port: \d+", f"subscribe_port: {bus.subscribe_port}", text)
    text = re.sub(
        r"drivers: \{command_port: \d+\}", f"drivers: {{command_port: {drivers_port}}}", text
    )
    text = re.sub(
        r"sequencer: \{command_port: \d+\}",
        f"sequencer: {{command_port: {sequencer_port or free_port()}}}",
        text,
    )
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


def test_cli_trap_without_a_running_lab_exits_1(tmp_path, capsys):
    path = lab_file_for(tmp_path, BusSettings(publish_port=free_port()), free_port())
    started = time.monotonic()
    code = main(
        ["run-qasm", str(QASM_DIR / "bell_v2.qasm"), "--backend", "trap", "--config", str(path)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: trap backend: nothing listens at tcp://127.0.0.1:")
    assert "the sequencer service's port" in err
    assert "ionpilot up" in err and "Traceback" not in err
    assert time.monotonic() - started < 10


# --- the live lab: simulated pulser, hub, driver host --------------------------------------


@dataclasses.dataclass
class LiveTrap:
    lab: Lab
    host: DriverHost
    bus: BusSettings
    link: BusPulserLink
    device: DeviceSettings


@pytest.fixture(scope="module")
def live() -> Iterator[LiveTrap]:
    with live_lab(
        ["pulser"],
        RealClock(1.0),
        settings=SimSettings(seed=7, n_ions=2),
        connected_within_s=15.0,
    ) as running:
        link = BusPulserLink(running.bus, running.host.endpoint, "pulser", client="sequencer")
        try:
            yield LiveTrap(running.lab, running.host, running.bus, link, running.config.device)
        finally:
            link.close()


def test_bell_on_the_trap(live):
    program = compile_program(parse_qasm(BELL), live.device)
    result = run_program(program, TrapBackend(live.device, live.link), live.device, shots=400)
    counts = result["counts"]
    assert result["backend"] == "trap" and result["shots"] == 400
    assert sum(counts.values()) == 400
    # readout errors (bright ion with no photon 0.25 %, dark ion decaying 0.6 %) are small
    assert counts.get("01", 0) + counts.get("10", 0) <= 0.05 * 400
    assert binomial_ok(counts.get("00", 0), 400, 0.5)
    assert binomial_ok(counts.get("11", 0), 400, 0.5)
    lo, hi = result["intervals"]["00"]
    assert lo < counts["00"] / 400 < hi


def test_single_qubit_rotation_statistics_on_the_trap(live):
    # ry(2·acos(√0.75)): P(1) = 1/4; plus an X on the second qubit: always 1
    theta = 2 * math.acos(math.sqrt(0.75))
    circuit = parse_qasm(
        V3 + f"qubit[2] q;\nbit[2] c;\nry({theta!r}) q[0];\nx q[1];\nc = measure q;\n"
    )
    program = compile_program(circuit, live.device)
    result = run_program(program, TrapBackend(live.device, live.link), live.device, shots=400)
    counts = result["counts"]
    ones_q0 = counts.get("11", 0) + counts.get("01", 0)
    ones_q1 = counts.get("10", 0) + counts.get("11", 0)
    assert binomial_ok(ones_q0, 400, 0.25)
    assert ones_q1 >= 0.95 * 400


def test_python_builder_circuit_on_the_trap_uses_the_global_beam(live):
    circuit = Circuit(2, 2)
    circuit.x(0)
    circuit.x(1)
    circuit.measure_all()
    program = compile_program(circuit, live.device)
    assert any(e.channel == "raman_global" for e in program.schedule.events)
    result = run_program(program, TrapBackend(live.device, live.link), live.device, shots=200)
    assert result["counts"].get("11", 0) >= 0.95 * 200


def test_repeat_until_success_runs_through_the_drivers_with_registers(live):
    """The unrolled loop's registers and conditional detections pass the driver and the live
    controller; every shot ends on success and the result states what the bound cut off."""
    text = (QASM_DIR / "repeat_until_success_v3.qasm").read_text()
    program = compile_program(parse_qasm(text), live.device)
    assert program.schedule.derived
    shots = 200
    result = run_program(program, TrapBackend(live.device, live.link), live.device, shots=shots)
    assert result["truncated"][0]["fraction"] <= 0.02
    failed = sum(v for k, v in result["counts"].items() if k.split()[1] == "1")
    assert failed <= 0.03 * shots  # a misread helper only
    out = sum(v for k, v in result["counts"].items() if k.split()[0] == "1")
    assert binomial_ok(out, shots, math.sin(0.6) ** 2)


def test_three_qubits_on_a_two_ion_trap_are_refused(live):
    program = compile_program(parse_qasm(V3 + "qubit[3] q;\nh q;\n"), live.device)
    with pytest.raises(SequencerError, match="holds 2 ion"):
        run_program(program, TrapBackend(live.device, live.link), live.device, shots=10)


@dataclasses.dataclass
class TrapQueue:
    """The sequencer service on the live trap, a lab file that points at it, and every run the
    simulated pulser played (shots per run)."""

    service: SequencerService
    client: CommandClient
    lab_file: Path
    runs: list[int]

    def call(self, name: str, **args: Any) -> Any:
        return self.client.call("sequencer", "call", {"name": name, **args})

    def audit(self) -> list[tuple[str, str, str]]:
        listing = self.client.call("sequencer", "list")
        return [(a["job_id"], a["action"], a["who"]) for a in listing["audit"]]


@pytest.fixture
def trap_queue(live, tmp_path, monkeypatch) -> Iterator[TrapQueue]:
    world = live.lab.world
    runs: list[int] = []
    play = world.run_schedule

    def counted(pulses: Any, shots: int) -> Any:
        runs.append(shots)
        return play(pulses, shots)

    monkeypatch.setattr(world, "run_schedule", counted)
    link = BusPulserLink(live.bus, live.host.endpoint, "pulser", client="sequencer")
    backend = TrapBackend(live.device, link)
    service = SequencerService(
        JobQueue(tmp_path / "jobs.json"),
        live.device,
        lambda job: execute_job(job, live.device, backend=backend),
        live.bus,
        "tcp://127.0.0.1:0",
    ).start()
    drivers_port = int(live.host.endpoint.rsplit(":", 1)[1])
    port = int(service.endpoint.rsplit(":", 1)[1])
    lab = lab_file_for(tmp_path, live.bus, drivers_port, sequencer_port=port)
    client = CommandClient(live.bus, service.endpoint, name="daemon")
    try:
        yield TrapQueue(service, client, lab, runs)
    finally:
        client.close()
        service.stop()
        link.close()


def test_cli_run_qasm_on_the_trap(trap_queue, capsys):
    path = trap_queue.lab_file
    args = ["run-qasm", str(QASM_DIR / "bell_v2.qasm"), "--backend", "trap", "--config", str(path)]
    assert main([*args, "--shots", "200", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backend"] == "trap" and doc["probabilities_exact"] is False
    assert doc["counts"].get("00", 0) + doc["counts"].get("11", 0) >= 0.95 * 200
    assert doc["device"]["name"] == "sim-yb171-5"
    assert sum(trap_queue.runs) == 200
    job = doc["job"]
    assert [a[1] for a in trap_queue.audit() if a[0] == job["id"]] == ["submit", "start", "done"]
    assert job["waited_s"] >= 0 and job["ran_s"] > 0


def test_run_qasm_no_wait_on_a_held_trap_is_refused_then_runs_after_resume(trap_queue, capsys):
    """Issue 15: during an ion-loss recovery (queue held) run-qasm on the trap printed p=1.0000
    for an empty trap, with no warning and no audit entry. Now it goes through the queue."""
    path = trap_queue.lab_file
    args = ["run-qasm", str(QASM_DIR / "bell_v2.qasm"), "--backend", "trap", "--config", str(path)]
    args += ["--shots", "200", "--no-wait"]
    trap_queue.call("hold", reason="recovery: ion_loss")
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: trap backend: user jobs are held since ")
    assert "by daemon: recovery: ion_loss; nothing submitted (--no-wait" in err
    assert trap_queue.runs == []  # the pulser played nothing
    assert trap_queue.client.call("sequencer", "list")["jobs"] == []
    trap_queue.call("resume")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "200 shots on trap" in out
    (job,) = trap_queue.client.call("sequencer", "list")["jobs"]
    assert job["state"] == "done" and f"job {job['id']} by {job['submitter']}" in out
    assert sum(trap_queue.runs) == 200
    mine = [(a[1], a[2]) for a in trap_queue.audit() if a[0] == job["id"]]
    assert mine == [("submit", job["submitter"]), ("start", "sequencer"), ("done", "sequencer")]
    assert "@" in job["submitter"]  # user@host
    queue_records = [(a[1], a[2]) for a in trap_queue.audit() if not a[0]]
    assert queue_records == [("hold", "daemon"), ("resume", "daemon")]


def test_run_qasm_on_a_held_trap_waits_saying_why(trap_queue, capsys):
    path = trap_queue.lab_file
    args = ["run-qasm", str(QASM_DIR / "bell_v2.qasm"), "--backend", "trap", "--config", str(path)]
    args += ["--shots", "100"]
    trap_queue.call("hold", reason="recovery: ion_loss")
    codes: list[int] = []
    waiting = threading.Thread(target=lambda: codes.append(main(args)), daemon=True)
    waiting.start()
    said: list[str] = []

    def told(words: str) -> bool:
        said.append(capsys.readouterr().err)
        return words in "".join(said)

    wait_for(lambda: told("waits: user jobs are held since "))
    assert re.search(
        r"held since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d \(for [\d.]+ m?s\) by daemon: "
        r"recovery: ion_loss \(Ctrl-C cancels the job\)",
        "".join(said),
    )
    (queued,) = trap_queue.client.call("sequencer", "list")["jobs"]
    assert queued["state"] == "queued" and trap_queue.runs == []
    trap_queue.call("resume")
    waiting.join(60)
    assert codes == [0]
    assert "100 shots on trap" in capsys.readouterr().out
    assert sum(trap_queue.runs) == 100


FEED_FORWARD = (
    V3 + "qubit q;\nbit c0;\nbit c1;\nry(1.1) q;\nc0 = measure q;\n"
    "if (c0 == 1) { x q; }\nry(0.7) q;\nc1 = measure q;\n"
)


def test_feed_forward_translates_to_a_conditional_segment():
    device = lab_device()
    program = compile_program(parse_qasm(FEED_FORWARD), device)
    pulses = translate_schedule(program.schedule, device).pulses
    conditional = [p for p in pulses if "condition" in p]
    assert len(conditional) == 1
    window = next(p["window"] for p in pulses if p["channel"] == "detect")
    assert conditional[0]["condition"]["bits"] == [[window, 0]]
    assert conditional[0]["condition"]["accept"] == [1]
    detect_end = next(p["t_ns"] + p["duration_ns"] for p in pulses if p["channel"] == "detect")
    assert conditional[0]["t_ns"] - detect_end >= device.feedback_latency * 1e9


def test_feed_forward_on_the_trap_matches_the_simulator(live):
    # ry(1.1), measure, flip back if 1, ry(0.7), measure: c1 is 1 with sin²(0.35) whatever c0
    # was (the branch resets the ion to |0>); c0 is 1 with sin²(0.55)
    program = compile_program(parse_qasm(FEED_FORWARD), live.device)
    shots = 600
    trap = run_program(program, TrapBackend(live.device, live.link), live.device, shots=shots)
    sim = run_program(program, get_backend("sim", live.device), live.device, shots, seed=3)
    for result in (trap, sim):
        counts = result["counts"]
        c0 = sum(v for k, v in counts.items() if k.split()[1] == "1")
        c1 = sum(v for k, v in counts.items() if k.split()[0] == "1")
        assert binomial_ok(c0, shots, math.sin(0.55) ** 2)
        assert binomial_ok(c1, shots, math.sin(0.35) ** 2)
    # without the branch c1 would follow c0 (P(1) = sin²(0.9) = 0.61 for c0 = 1): the trap
    # really branched if c1 is as rare after c0 = 1 as after c0 = 0
    after_one = sum(v for k, v in trap["counts"].items() if k == "1 1")
    ones = sum(v for k, v in trap["counts"].items() if k.split()[1] == "1")
    assert after_one <= 0.25 * ones


def test_the_daemons_interrogations_run_as_clock_jobs_in_the_queue(trap_queue, live):
    """The live daemon's path (servo/clock_jobs.py): each run of an interrogation is a clock job
    answered once played, with the controller's raw windows; it runs while user jobs are held,
    other callers are served meanwhile, and only the aggregate reaches the audit."""
    from ionpilot.servo.clock_jobs import QueuedClockShots
    from ionpilot.servo.interrogation import lock_probe
    from ionpilot.servo.seams import LabError
    from ionpilot.servo.settings import ClockLockSettings, PulseCalibration

    client = trap_queue.client
    daemon = CommandClient(live.bus, trap_queue.service.endpoint, name="daemon")
    shots = QueuedClockShots(daemon.call, PulseCalibration(), live.device)
    shots.context = lambda: {"lock_state": "acquiring", "fractional_offset": None}
    probe = lock_probe(ClockLockSettings())
    trap_queue.call("hold", reason="clock lock is acquiring", client="daemon.lock")
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(shots.interrogate(probe, 200e6, 20)))
    worker.start()
    # while the clock job plays (20 shots of 0.1 s), the service answers others at once
    seen = wait_for(lambda: client.call("sequencer", "status", timeout=2.0)["running"])
    assert isinstance(seen, str)
    worker.join(30)
    assert len(results) == 1 and 0 <= results[0] <= 20
    assert shots.jobs_run == 1 and trap_queue.runs == [20]  # no ion watch: one run
    listing = client.call("sequencer", "list", {"kind": "clock"})
    (job,) = listing["jobs"]
    assert job["state"] == "done" and job["shots"] == 20 and job["submitter"] == "daemon"
    assert listing["held"] is True
    assert [a for a in listing["audit"] if a["job_id"]] == []  # no per-job clock records
    status = client.call("sequencer", "status")
    assert status["clock"]["lock"]["state"] == "acquiring"
    assert shots.count_photons(0.05) > 100  # the fluorescence check, a clock job too
    with pytest.raises(LabError, match="schedule refused"):
        shots.run_job('{"format": "nonsense"}', 1, 1.0)
    daemon.close()
