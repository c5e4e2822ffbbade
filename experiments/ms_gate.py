"""MS gate calibration: the entangled state a Mølmer–Sørensen gate makes, and its fidelity.

The gate (one MS, from `h; cx` compiled by the sequencer to the native set) turns |00⟩ into a
Bell state. Its populations P00 + P11 and the contrast C of the parity oscillation when both
ions are then rotated by R(π/2, φ) (parity ∝ cos 2φ) give the Bell-state fidelity
F = (P00 + P11)/2 + C/2 (Sackett et al., Nature 404, 256 (2000)): the usual measure of an MS
gate's fidelity, recorded as `ms_fidelity`. Before that, both ions are read with no gate and
after an X on each: an ion that does not fluoresce stops the experiment (a chain reloaded with
fewer ions), and the two readings give the pair's `readout_fidelity`. Every program is OpenQASM run as a user job of the
sequencer service (so it waits while the daemon recovers the lab).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qcodes.parameters import Parameter

from ionpilot.experiments.fitting import Fit, binomial_sigma
from ionpilot.experiments.pulses import SequencerJobs
from ionpilot.experiments.standard import Progress, Recorded, finish, fit_and_check, run_scan

if TYPE_CHECKING:
    from ionpilot.script import Lab

__all__ = ["MsGateSettings", "bell_program", "ms_gate", "parity_fringe"]


@dataclass(frozen=True)
class MsGateSettings:
    """The ion pair (`ion_a`, `ion_b`), analysis phases over [0, π) (`points`), shots each."""

    ion_a: int = 0
    ion_b: int = 1
    points: int = 9
    shots: int = 100

    def check(self) -> None:
        if not 5 <= self.points <= 101:
            raise ValueError(f"--points {self.points}: 5..101 analysis phases")
        if not 20 <= self.shots <= 10_000:
            raise ValueError(f"--shots {self.shots}: 20..10000 per point")
        if self.ion_a == self.ion_b or min(self.ion_a, self.ion_b) < 0:
            raise ValueError(
                f"--ion_a {self.ion_a} --ion_b {self.ion_b}: two different ions (0-based)"
            )


def readout_program(n_qubits: int, a: int, b: int, flipped: bool) -> str:
    """OpenQASM 3: both ions left in |0⟩ (bright) or flipped to |1⟩ (dark), then measured."""
    lines = ["OPENQASM 3.0;", 'include "stdgates.inc";', f"qubit[{n_qubits}] q;", "bit[2] c;"]
    if flipped:
        lines += [f"x q[{a}];", f"x q[{b}];"]
    lines += [f"c[0] = measure q[{a}];", f"c[1] = measure q[{b}];"]
    return "\n".join(lines) + "\n"


def bell_program(n_qubits: int, a: int, b: int, phase_rad: float | None) -> str:
    """OpenQASM 3: the Bell state on (a, b) by one MS gate, then (if `phase_rad`) R(π/2, φ) on
    both, then a measurement of both."""
    lines = [
        "OPENQASM 3.0;",
        'include "stdgates.inc";',
        f"qubit[{n_qubits}] q;",
        "bit[2] c;",
        f"h q[{a}];",
        f"cx q[{a}], q[{b}];",
    ]
    if phase_rad is not None:
        # R(θ, φ) = U(θ, φ − π/2, π/2 − φ)
        for q in (a, b):
            lines.append(
                f"U(pi/2, {phase_rad - math.pi / 2!r}, {math.pi / 2 - phase_rad!r}) q[{q}];"
            )
    lines += [f"c[0] = measure q[{a}];", f"c[1] = measure q[{b}];"]
    return "\n".join(lines) + "\n"


def _fractions(result: dict[str, Any]) -> dict[str, float]:
    counts = result.get("counts")
    if not isinstance(counts, dict) or not counts:
        raise ValueError("a result without counts")
    shots = sum(int(n) for n in counts.values())
    return {
        k: sum(int(n) for kk, n in counts.items() if kk == k) / shots
        for k in ("00", "01", "10", "11")
    }


def parity_fringe(
    phi: npt.NDArray[np.float64], contrast: float, phase: float, offset: float
) -> Any:
    return offset + contrast * np.cos(2 * phi + phase)


def _chain_size(lab: Lab) -> int:
    pulser = lab.config.device.pulse_controller
    reply = lab.call(pulser, "call", {"name": "describe"}, timeout=10.0)
    n = reply.get("n_ions") if isinstance(reply, dict) else None
    return int(n) if isinstance(n, int) else 1


def ms_gate(lab: Lab, settings: MsGateSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Bell-state populations and parity contrast; `ms_fidelity` recorded with its uncertainty."""
    settings.check()
    ions = _chain_size(lab)
    need = max(settings.ion_a, settings.ion_b) + 1
    if ions < max(2, need):
        raise ValueError(
            f"ms-gate needs ions {settings.ion_a} and {settings.ion_b} in the trap; the pulse "
            f"controller reports a chain of {ions} ion(s)"
        )
    jobs = SequencerJobs(lab, client="experiment ms-gate")
    bright = _fractions(
        jobs.run_qasm(readout_program(need, settings.ion_a, settings.ion_b, False), settings.shots)
    )
    for bit, ion in ((0, settings.ion_a), (1, settings.ion_b)):
        dark = sum(p for key, p in bright.items() if key[1 - bit] == "1")
        if dark > 0.5:
            raise ValueError(
                f"ion {ion} reads dark in {dark:.0%} of shots with no gate played (lost, or "
                "shelved): the MS gate needs both ions of the pair"
            )
    dark_read = _fractions(
        jobs.run_qasm(readout_program(need, settings.ion_a, settings.ion_b, True), settings.shots)
    )
    readout = (bright["00"] + dark_read["11"]) / 2  # both ions read right, averaged over states
    readout_error = math.sqrt(
        max(readout * (1 - readout), 1.0 / settings.shots) / (2 * settings.shots)
    )
    populations = _fractions(
        jobs.run_qasm(bell_program(need, settings.ion_a, settings.ion_b, None), settings.shots)
    )
    even = populations["00"] + populations["11"]
    even_error = math.sqrt(max(even * (1 - even), 1.0 / settings.shots) / settings.shots)
    phase = Parameter("analysis_phase", label="analysis phase", unit="rad", set_cmd=None)
    phase.set(0.0)

    def measure() -> float:
        program = bell_program(need, settings.ion_a, settings.ion_b, float(phase.get()))
        f = _fractions(jobs.run_qasm(program, settings.shots))
        return f["00"] + f["11"] - f["01"] - f["10"]

    parity = Parameter("parity", label="parity", unit="", get_cmd=measure, set_cmd=False)
    values = list(np.linspace(0.0, math.pi, settings.points, endpoint=False))
    result, x, y = run_scan(
        lab,
        "ms-gate",
        phase,
        values,
        parity,
        progress=progress,
        metadata={"ionpilot_bell_populations": repr(populations)},
    )
    peak = int(np.argmax(y))
    guess = [max(float(np.ptp(y)) / 2, 0.1), -2 * float(x[peak]), 0.0]

    def sane(fit: Fit) -> str:
        return "" if abs(fit.values["contrast"]) > 0.05 else "no parity oscillation"

    fit = fit_and_check(
        parity_fringe,
        x,
        y,
        ["contrast", "phase", "offset"],
        guess,
        check=sane,
        sigma=2 * binomial_sigma((1 + y) / 2, settings.shots),
    )
    derived: dict[str, float] = {
        "bell_populations": even,
        "bell_populations_error": even_error,
        "readout_fidelity": readout,
        "readout_fidelity_error": readout_error,
    }
    cals: list[Recorded] = []
    if fit.converged:
        contrast = abs(fit.values["contrast"])
        fidelity = even / 2 + contrast / 2
        error = 0.5 * math.hypot(even_error, fit.errors["contrast"])
        derived.update(
            {
                "parity_contrast": contrast,
                "parity_contrast_error": fit.errors["contrast"],
                "ms_fidelity": fidelity,
                "ms_fidelity_error": error,
            }
        )
        cals = [
            Recorded("ms_fidelity", min(fidelity, 1.0), error, ""),
            Recorded("readout_fidelity", readout, readout_error, ""),
        ]
    return finish(
        lab,
        "ms-gate",
        result,
        x,
        y,
        fit=fit,
        model=parity_fringe,
        x_label="analysis phase φ (rad)",
        y_label="parity",
        derived=derived,
        calibrations=cals,
    )
