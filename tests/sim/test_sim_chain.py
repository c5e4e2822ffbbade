"""The five-ion chain as a processor (sim/PROTOCOLS.md §10), on virtual time: readout fidelity
measured from the per-ion detector's counts is the device's stated figure, the MS error comes from
the motional mode's heating, an addressed beam leaks onto its neighbours, each ion's pixel says
whether it is there, and the clock servo still locks on the chain's clock ion."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from ionpilot.commands.clock_sim import default_aux_locks, sim_world_settings
from ionpilot.config import load_config
from ionpilot.harness import campaign
from ionpilot.harness.lab import WorldLab, world_clock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.outputs import RecordingOutputs
from ionpilot.servo.settings import ClockLockSettings, RecoverySettings
from ionpilot.sim.chain_models import MotionalMode
from ionpilot.sim.clock import VirtualClock
from ionpilot.sim.instruments.ionpilot_pulser import Pulser, RequestError
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import Pulse, World

LAB = load_config(Path(__file__).resolve().parents[2] / "configs" / "sim-lab.yaml")
COOL = Pulse(0, 1_000_000, "cool")
PUMP = Pulse(1_000_000, 20_000, "repump")
DETECT_NS = 300_000


def chain_world(seed: int = 4, **chain: float) -> World:
    sim = LAB.sim
    return World(
        dataclasses.replace(sim, seed=seed, chain=dataclasses.replace(sim.chain, **chain)),
        VirtualClock(),
    )


def detect_at(t_ns: int) -> Pulse:
    return Pulse(t_ns, DETECT_NS, "detect", window="d", per_ion=True)


def dark_bits(world: World, pulses: list[Pulse], shots: int) -> np.ndarray:
    """shots × ions: True where an ion read dark (fewer photons than the device threshold)."""
    counts = world.run_schedule(pulses, shots)
    per_ion = np.array([shot[-1] for shot in counts])
    return per_ion < LAB.device.detection_threshold


def within(k: float, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(k / n - p) <= sigmas * math.sqrt(max(p * (1 - p), 1 / n) / n)


def test_readout_errors_measured_from_the_counts_are_the_devices_figures():
    world = chain_world()
    shots = 4000
    bright = dark_bits(world, [COOL, PUMP, detect_at(1_020_000)], shots)
    pi = Pulse(1_020_000, 10_000, "raman", amplitude=1.0)  # global π: every ion to D3/2
    dark = dark_bits(world, [COOL, PUMP, pi, detect_at(1_030_000)], shots)
    em = LAB.device.error_model
    n = shots * LAB.sim.n_ions
    # prep errors (0.1 %) make a bright-prepared ion dark and a π-pulsed one bright as well
    prep = LAB.sim.chain.prep_error
    assert within(int(bright.sum()), n, em.readout_error_dark + prep)
    assert within(int((~dark).sum()), n, em.readout_error_bright + prep)


def test_the_ms_error_is_the_heating_of_the_motional_mode():
    mode = MotionalMode(LAB.sim.chain.lamb_dicke, LAB.sim.chain.mean_phonons, 30.0)
    assert abs(mode.ms_infidelity(200e-6) - (1 - LAB.device.ms_gate.fidelity)) <= (
        LAB.device.ms_gate.fidelity_error
    )
    ms = [Pulse(1_020_000 + k * 200_000, 200_000, "ms", targets=(0, 1)) for k in range(2)]
    pulses = [COOL, PUMP, *ms, detect_at(1_420_000)]
    shots = 2000
    for rate, flip in ((0.0, 0.0), (600.0, 600.0 * 200e-6)):
        bits = dark_bits(chain_world(heating_rate=rate), pulses, shots)
        odd = int((bits[:, 0] != bits[:, 1]).sum())  # MS(π) takes |00> to |11>: one flip
        expected = 2 * flip * (1 - flip) + 0.012  # and readout errors on two ions
        assert within(odd, shots, expected), (rate, odd / shots, expected)


def test_an_addressed_beam_leaks_onto_its_neighbours():
    twenty_pi = [
        Pulse(1_020_000 + k * 10_000, 10_000, "raman", amplitude=1.0, target=2) for k in range(20)
    ]
    bits = dark_bits(chain_world(), [COOL, PUMP, *twenty_pi, detect_at(1_220_000)], 2000)
    eps = LAB.sim.chain.addressing_crosstalk
    leaked = math.sin(20 * math.pi * eps / 2) ** 2  # 10 turns on ion 2, 0.63 rad beside it
    for ion, p in ((1, leaked), (3, leaked), (0, 0.0), (4, 0.0), (2, 0.0)):
        assert within(int(bits[:, ion].sum()), 2000, p + 0.01, sigmas=5.0), ion


def test_each_ions_pixel_says_whether_it_is_there():
    world = chain_world()
    total, per_ion = world.count_photons_per_ion(0.01)
    assert all(c > 100 for c in per_ion) and total >= sum(per_ion) - 50
    world.inject("ion_loss", "3")
    _, per_ion = world.count_photons_per_ion(0.01)
    assert per_ion[3] <= 3 and all(c > 100 for i, c in enumerate(per_ion) if i != 3)


def test_the_clock_servo_locks_on_the_chain():
    sim = sim_world_settings(SimSettings(), "default", 3, 0.3)
    world = World(dataclasses.replace(sim, n_ions=5))
    lab = WorldLab(world, seed=3)
    lock = ClockLock(ClockLockSettings(), lab, world_clock(world), RecordingOutputs())
    lock.start()
    for _ in range(300):
        if lock.state is LockState.LOCKED:
            break
        lock.step()
    assert lock.state is LockState.LOCKED
    for _ in range(60):
        lock.step()
        assert lock.state is LockState.LOCKED
    assert abs(lock.aom_frequency_hz - world.clock_line_aom_hz()) < 2.0


@pytest.mark.parametrize("ions", [[], [0, 0], [5], [True]])
def test_a_detection_on_bad_ions_is_refused(ions):
    pulser = Pulser(chain_world(), "pulser")
    raw = {"t_ns": 0, "duration_ns": 1000, "channel": "detect", "window": "d", "ions": ions}
    with pytest.raises(RequestError, match=r"distinct ion indices 0\.\.4"):
        pulser._pulse(raw, 0)


@pytest.mark.parametrize(
    ("kind", "lost"), [("ion_loss", "2"), ("ion_loss", None), ("chain_melt", None)]
)
def test_an_ion_lost_from_the_chain_holds_jobs_until_the_chain_is_reloaded_and_counted(kind, lost):
    """One ion of five, all of them, or those a melted crystal lost: the clock shots' dimmest
    cooling pixel trips the ion watch, jobs are held, the reload runs until every ion fluoresces on its own pixel, the
    count is verified, then jobs are released and the clock is locked without a line search."""
    sim = SimSettings()
    world = World(dataclasses.replace(sim_world_settings(sim, "default", 1, 0.3), n_ions=5))
    held: list[tuple[float, bool]] = []
    run = campaign.build(
        world,
        ClockLockSettings(comb_period=60.0),
        RecoverySettings(chain_ions=5),
        default_aux_locks(sim),
        1,
        hold_jobs=lambda hold, why: held.append((world.now(), hold)),
    )
    campaign.start(run)
    campaign.go_until(run, world.now() + 120.0)
    assert run.lock.state is LockState.LOCKED and not held
    world.inject(kind, lost)
    assert sum(world.present) < 5
    lost_at = world.now()
    campaign.go_until(run, lost_at + 150.0)
    steps = [(row[3], row[4]) for row in run.audit.rows() if row[2] in ("step", "jobs")]
    assert ("hold", "recovery: ion_loss") in steps
    assert ("ion_loss.verify_single_ion", "5 ions counted: the chain is whole") in steps
    assert steps.index(("ion_loss.verify_single_ion", "5 ions counted: the chain is whole")) < (
        steps.index(("release", "recovered"))
    )
    (first, last) = held
    assert first[1] is True and first[0] - lost_at < 2.0  # held within the watch's debounce
    assert last[1] is False and world.present == [True] * 5
    assert run.lock.state is LockState.LOCKED
