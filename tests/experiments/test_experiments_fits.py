"""The standard experiments' models and fits on synthetic data with known truth (no lab): each
fit finds its parameters within 3σ, says when it cannot converge, and the probes they play are
schedules the sequencer validates for the simulated lab's device."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ionpilot.config import load_config
from ionpilot.experiments.clock import _fwhm, rabi_flop, rabi_line, ramsey_fringe
from ionpilot.experiments.fitting import binomial_sigma, fit_curve
from ionpilot.experiments.micromotion import ElectrodeNotSettled, wait_settled
from ionpilot.experiments.ms_gate import bell_program, parity_fringe
from ionpilot.experiments.pulses import clock_probe, excitation
from ionpilot.experiments.scan import outside_in
from ionpilot.sequencer.qasm import parse_qasm
from ionpilot.sequencer.runner import compile_program
from ionpilot.sequencer.schedule import validate_schedule

SIM_LAB = Path(__file__).resolve().parents[2] / "configs" / "sim-lab.yaml"
RNG = np.random.default_rng(17)


def binomial(p: np.ndarray, shots: int) -> np.ndarray:
    return RNG.binomial(shots, np.clip(p, 0, 1)) / shots


def test_rabi_flop_fit_finds_the_pi_time() -> None:
    t = np.linspace(1e-3, 36e-3, 12)
    y = binomial(rabi_flop(t, 20e-3, 0.97, 0.01), 50)
    names = ["pi_time", "contrast", "offset"]
    fit = fit_curve(rabi_flop, t, y, names, [18e-3, 0.9, 0.0], sigma=binomial_sigma(y, 50))
    assert fit.converged
    assert abs(fit.values["pi_time"] - 20e-3) < 3 * fit.errors["pi_time"] < 1e-3


def test_clock_line_fit_finds_the_centre_and_width() -> None:
    d = np.linspace(-40, 40, 11)
    y = binomial(rabi_line(d, 3.0, 25.0, 0.95, 20e-3), 50)

    def model(x: np.ndarray, centre: float, rabi_hz: float, contrast: float) -> np.ndarray:
        return rabi_line(x, centre, rabi_hz, contrast, 20e-3)  # type: ignore[no-any-return]

    names = ["centre", "rabi_hz", "contrast"]
    fit = fit_curve(model, d, y, names, [0.0, 25.0, 1.0], sigma=binomial_sigma(y, 50))
    assert fit.converged and abs(fit.values["centre"] - 3.0) < 3 * fit.errors["centre"]
    assert _fwhm(25.0, 20e-3) == pytest.approx(0.7987 / 20e-3, rel=0.01)  # π pulse: 0.80/T


def test_ramsey_fringes_give_detuning_and_decay() -> None:
    t = np.linspace(1e-3, 0.3, 25)
    y = binomial(ramsey_fringe(t, 20.0, 5.0, 0.95, 0.3), 200)
    names = ["detuning", "decay", "contrast", "phase"]
    guess = [20.0, 1.0, 0.9, 0.0]
    fit = fit_curve(ramsey_fringe, t, y, names, guess, sigma=binomial_sigma(y, 200))
    assert fit.converged
    assert abs(fit.values["detuning"] - 20.0) < 3 * fit.errors["detuning"]
    assert abs(fit.values["decay"] - 5.0) < 3 * fit.errors["decay"]


def test_parity_fringe_gives_the_contrast() -> None:
    phi = np.linspace(0, np.pi, 9, endpoint=False)
    y = 2 * binomial((1 + parity_fringe(phi, 0.9, 0.4, 0.0)) / 2, 200) - 1
    sigma = 2 * binomial_sigma((1 + y) / 2, 200)
    names = ["contrast", "phase", "offset"]
    fit = fit_curve(parity_fringe, phi, y, names, [0.5, 0.0, 0.0], sigma=sigma)
    assert fit.converged and abs(abs(fit.values["contrast"]) - 0.9) < 3 * fit.errors["contrast"]


def test_a_fit_without_enough_points_says_so() -> None:
    fit = fit_curve(
        rabi_flop, [1e-3, 2e-3], [0.1, 0.2], ["pi_time", "contrast", "offset"], [1, 1, 0]
    )
    assert not fit.converged and "cannot fix" in fit.message


def test_the_probes_are_schedules_and_programs_the_device_takes() -> None:
    device = load_config(SIM_LAB).device
    rabi = clock_probe(device, [(0.0, 13e-3, 1.0, 0.0)], 200e6 + 37.0)
    ramsey = clock_probe(device, [(0.0, 10e-3, 1.0, 0.0), (50e-3, 10e-3, 1.0, 0.0)], 200e6)
    for schedule in (rabi, ramsey):
        validate_schedule(schedule, device)
    probes = [e for e in ramsey.events if e.channel == device.clock_channel]
    assert [e.start_mu for e in probes][1] - probes[0].end_mu == round(50e-3 / device.time_unit)
    for phase in (None, 0.7):
        compiled = compile_program(parse_qasm(bell_program(2, 0, 1, phase), name="t"), device)
        assert compiled.report.two_qubit_count == 1  # one MS gate
    assert excitation({"counts": {"1": 30, "0": 70}}) == pytest.approx(0.3)
    assert excitation({"counts": {"0 1": 5, "1 0": 5}}, bit=0) == pytest.approx(0.5)


@pytest.mark.parametrize("n_ions", [1, 2])
def test_a_chain_shows_the_ramsey_fringes_a_single_ion_does(n_ions: int) -> None:
    """The World plays a chain's clock shots pulse by pulse: the free precession between the
    two π/2 pulses must turn the phase there as the single ion's fast path does."""
    import dataclasses

    from ionpilot.sequencer.trap import translate_schedule
    from ionpilot.sim.instruments.ionpilot_pulser import Pulser
    from ionpilot.sim.settings import SimSettings
    from ionpilot.sim.world import World

    device = load_config(SIM_LAB).device
    quiet = dataclasses.replace(
        SimSettings().clock_laser, cavity_drift=0.0, flicker_floor=0.0, linewidth=0.0
    )
    world = World(dataclasses.replace(SimSettings(), n_ions=n_ions, clock_laser=quiet))
    pulser = Pulser(world, "pulser")
    line = world.clock_line_aom_hz()
    excited = []
    for gap in (13.5e-3, 38.5e-3):  # 20 Hz detuning: a dark and a bright fringe
        schedule = clock_probe(device, [(0, 0.01, 1.0, 0.0), (gap, 0.01, 1.0, 0.0)], line + 20.0)
        program = translate_schedule(schedule, device)
        pulses = [pulser._pulse(p, i) for i, p in enumerate(program.pulses)]
        shots = world.run_schedule(pulses, 100)
        per_ion = [s[0] for s in shots]
        excited.append(sum(1 for c in per_ion if (c[0] if isinstance(c, list) else c) < 1) / 100)
    assert excited[0] < 0.1 and excited[1] > 0.9, excited


class RampingOutput:
    """A QDAC channel ramping at `slew` V/s on a manual clock: its present output."""

    def __init__(self, start: float, target: float, slew: float) -> None:
        self.t = 0.0
        self.start, self.target, self.slew = start, target, slew

    def present(self) -> float:
        span = self.target - self.start
        reach = self.slew * self.t
        return self.target if abs(span) <= reach else self.start + math.copysign(reach, span)

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_a_count_waits_for_the_electrode_ramp() -> None:
    ramp = RampingOutput(0.0, -0.4, slew=10.0)  # 40 ms at the lab's allowed maximum
    waited = wait_settled(
        ramp.present, -0.4, what="dc_electrodes ch01", clock=lambda: ramp.t, sleep=ramp.sleep
    )
    assert 0.04 <= waited < 0.07 and ramp.present() == -0.4


def test_an_electrode_that_does_not_follow_is_named() -> None:
    ramp = RampingOutput(0.0, -0.4, slew=0.01)  # 40 s: beyond the timeout
    with pytest.raises(
        ElectrodeNotSettled, match=r"dc_electrodes ch01 reads -0.1\d* V, 10 s after"
    ):
        wait_settled(
            ramp.present, -0.4, what="dc_electrodes ch01", clock=lambda: ramp.t, sleep=ramp.sleep
        )


def test_a_scan_visits_its_points_outside_in() -> None:
    assert outside_in([1.0, 2.0, 3.0, 4.0, 5.0]) == [1.0, 5.0, 2.0, 4.0, 3.0]
    assert outside_in([1.0, 2.0, 3.0, 4.0]) == [1.0, 4.0, 2.0, 3.0]
    assert outside_in([]) == []
