"""The trap agrees with the model: every bundled QASM program that the device accepts runs on the
trap backend of the default lab's five-ion chain (the simulated pulse controller in process, on
virtual time, spoken to through its JSON protocol), and the total variation distance between the
trap's 2,000-shot probabilities and the noisy simulator's is within 3 standard deviations of the
TVD that shot noise alone gives (sampled from the simulator's distribution).

The gate light is steered to the device's stated lock residual (`error_model.detuning`), as the
clock servo leaves it; the physical effects the simulator does not model (detection crosstalk
between neighbouring pixels, the thermal spread of the MS angle, hiding spectators during a
mid-circuit detection) are below the shot noise at 2,000 shots (sim/PROTOCOLS.md §10)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ionpilot.config import LabConfig, load_config
from ionpilot.sequencer import SequencerError, TrapBackend, compile_program, get_backend, parse_qasm
from ionpilot.sequencer.trap import ChainIncomplete
from ionpilot.sim.clock import VirtualClock
from ionpilot.sim.instruments.ionpilot_pulser import Pulser
from ionpilot.sim.world import World

ROOT = Path(__file__).resolve().parents[2]
QASM_DIR = Path(__file__).parent / "qasm"
SHOTS = 2000
# what the five-qubit device itself refuses (compile time, whatever the backend)
REFUSED_BY_THE_DEVICE = {
    "adder_v2.qasm": "program needs 10 qubits, the device has 5 ions",
}


class InProcessLink:
    """The simulated pulse controller's own request handling, JSON in and out (PROTOCOLS §9)."""

    def __init__(self, world: World) -> None:
        self.pulser = Pulser(world, "pulser")

    def _op(self, **request: Any) -> Any:
        reply = self.pulser.handle(json.dumps(request))
        assert reply is not None
        answer = json.loads(reply)
        assert answer["ok"], answer
        return answer["result"]

    def describe(self) -> dict[str, Any]:
        result: dict[str, Any] = self._op(op="describe")
        return result

    def run(self, shots: int, pulses: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
        result: dict[str, Any] = self._op(op="run", shots=shots, schedule=pulses)
        return result


@pytest.fixture(scope="module")
def config() -> LabConfig:
    loaded = load_config(ROOT / "configs" / "sim-lab.yaml")
    assert loaded.sim.n_ions == 5 == loaded.device.ions  # the chain the device describes
    return loaded


def trap_on(config: LabConfig, seed: int) -> tuple[World, TrapBackend]:
    """A freshly loaded chain (its own seed) and the trap backend on it."""
    world = World(dataclasses.replace(config.sim, seed=seed), VirtualClock())
    return world, TrapBackend(config.device, InProcessLink(world), max_call_s=60)


def shot_noise_tvd(p: np.ndarray, shots: int, rng: np.random.Generator) -> tuple[float, float]:
    """Mean and standard deviation of the TVD between `shots` samples of `p` and `p`."""
    draws = rng.multinomial(shots, p, size=400) / shots
    tvd = 0.5 * np.abs(draws - p).sum(axis=1)
    return float(tvd.mean()), float(tvd.std())


def test_the_device_refuses_what_no_backend_can_run(config):
    device = config.device
    for name, words in REFUSED_BY_THE_DEVICE.items():
        with pytest.raises(SequencerError, match=words):
            compile_program(parse_qasm((QASM_DIR / name).read_text()), device)


PROGRAMS = sorted(p.name for p in QASM_DIR.glob("*.qasm") if p.name not in REFUSED_BY_THE_DEVICE)


@pytest.mark.parametrize("name", PROGRAMS)
def test_the_trap_matches_the_noisy_simulator_within_shot_noise(config, name):
    device = config.device
    world, trap = trap_on(config, seed=PROGRAMS.index(name) + 1)
    program = compile_program(parse_qasm((QASM_DIR / name).read_text()), device)
    world.set_dds("clock_aom", frequency_hz=world.clock_line_aom_hz() + device.error_model.detuning)
    measured = trap.run(program.schedule, SHOTS)
    assert sum(measured.counts.values()) == SHOTS
    model = get_backend("sim", device).run(program.schedule, 10 * SHOTS, seed=3).probabilities
    keys = sorted(set(measured.probabilities) | set(model))
    p = np.array([model.get(k, 0.0) for k in keys])
    q = np.array([measured.probabilities.get(k, 0.0) for k in keys])
    tvd = 0.5 * float(np.abs(q - p).sum())
    mean, sigma = shot_noise_tvd(p / p.sum(), SHOTS, np.random.default_rng(11))
    assert tvd <= mean + 3 * sigma, (name, tvd, mean, sigma)


def test_an_ion_lost_during_a_run_yields_no_result(config):
    """The cooling windows count each ion: the shots after ion 2 left show it dark, and the run
    is refused rather than decoded from a four-ion chain."""
    device = config.device
    world, trap = trap_on(config, seed=1)
    program = compile_program(
        parse_qasm(
            'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\n'
            "h q[0];\ncx q[0], q[1];\nc = measure q;\n"
        ),
        device,
    )
    world.schedule(world.now() + 0.3, "ion_loss", "2")  # in the middle of the run
    with pytest.raises(ChainIncomplete, match=r"ion 2 in \d+ shot\(s\) of \d+"):
        trap.run(program.schedule, 400)
    assert world.ions_present() == 4
    with pytest.raises(ChainIncomplete):  # and so is every run until the chain is reloaded
        trap.run(program.schedule, 10)
    world.restore("ions")
    assert sum(trap.run(program.schedule, 10).counts.values()) == 10
