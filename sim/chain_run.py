"""A pulser run on the chain: every shot of it at once, as a batch of state vectors.

The World takes what holds for the run (`RunConditions`: which ions are there in each shot, the
fluorescence, where the qubit line sits relative to the gate light in each shot) and hands the
pulses here. The optical qubit (|0⟩ = S½, |1⟩ = D3/2, PROTOCOLS §10) is driven by the clock
laser: `clock` pulses through the clock AOM, `raman` pulses (the historical channel name of the
gate beams) through the global or an addressed beam, `ms` pulses as a bichromatic pair on two
addressed beams. Between pulses the qubits precess at the detuning of the gate light from the
line, so the clock servo's lock error becomes a gate phase error, as on a real optical qubit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .chain_models import Addressing, Detector, MotionalMode, own_photons
from .physics import bessel_j
from .settings import SimSettings

if TYPE_CHECKING:
    from .world import Pulse

Complex = npt.NDArray[np.complex128]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
ShotCounts = list[list[int | list[int]]]


@dataclass
class RunConditions:
    """What a run of shots sees, fixed by the World when the run starts (and where ions left
    during it: `present` is per shot)."""

    present: Bools  # shots × ions: the ion is in the trap during the shot
    shelved: Bools  # ions in a dark (non-qubit) state: no fluorescence at all
    bright_rate_hz: float  # one bright ion's detected photon rate
    line_aom_hz: Floats  # per shot: the AOM frequency that puts the clock light on the line
    white_fm_h0: float  # the laser's white frequency noise, Hz²/Hz
    clock_aom_hz: float  # the clock AOM's DDS frequency (the gate beams follow it)
    clock_amplitude: float
    clock_phase_rad: float
    micromotion_beta: float
    rf_frequency_hz: float


class ChainRun:
    """The chain's processor models and one batch of state vectors (shots × 2^N)."""

    def __init__(self, settings: SimSettings, rng: np.random.Generator) -> None:
        self.settings = settings
        self.n = n = settings.n_ions
        c = settings.chain
        self.rng = rng
        self.addressing = Addressing(n, c.addressing_crosstalk)
        self.mode = MotionalMode(c.lamb_dicke, c.mean_phonons, c.heating_rate)
        self.detector = Detector(
            n, c.detection_crosstalk, c.pixel_background_rate, settings.ion.background_count_rate
        )
        index = np.arange(2**n)
        # bit of ion i in a basis index (ion 0 the most significant, as sim/chain.py)
        self.bits = np.stack([(index >> (n - 1 - i)) & 1 for i in range(n)], axis=1)
        self.excited = self.bits.sum(axis=1)

    # ---- state-vector kernels over a batch --------------------------------------------------

    def _ground(self, shots: int) -> Complex:
        psi = np.zeros((shots, 2**self.n), dtype=np.complex128)
        psi[:, 0] = 1.0
        return psi

    def _apply_1q(self, psi: Complex, u: Complex, ion: int, mask: Bools | None) -> Complex:
        """u: (shots, 2, 2) or (2, 2) on `ion` for the shots in `mask` (None: all)."""
        shots = psi.shape[0]
        v = psi.reshape(shots, 2**ion, 2, 2 ** (self.n - 1 - ion))
        spec = "ab,sxby->sxay" if u.ndim == 2 else "sab,sxby->sxay"
        out = np.einsum(spec, u, v).reshape(shots, -1)
        return out if mask is None else np.where(mask[:, None], out, psi)

    def _apply_2q(self, psi: Complex, u: Complex, a: int, b: int, mask: Bools | None) -> Complex:
        """u: (shots, 4, 4) on ions (a, b), index 2·bit_a + bit_b."""
        shots = psi.shape[0]
        t = psi.reshape((shots,) + (2,) * self.n)
        moved = np.moveaxis(t, [a + 1, b + 1], [-2, -1])
        shape = moved.shape
        flat = moved.reshape(shots, -1, 4)
        out = np.einsum("sij,srj->sri", u, flat).reshape(shape)
        back = np.moveaxis(out, [-2, -1], [a + 1, b + 1]).reshape(shots, -1)
        return back if mask is None else np.where(mask[:, None], back, psi)

    def _phase(self, psi: Complex, ion: int, phi: Floats) -> Complex:
        """Free evolution of one ion in the frame of the light, exp(+iφ/2 Z), φ per shot."""
        u = np.zeros((phi.shape[0], 2, 2), dtype=np.complex128)
        u[:, 0, 0] = np.exp(0.5j * phi)
        u[:, 1, 1] = np.exp(-0.5j * phi)
        return self._apply_1q(psi, u, ion, None)

    @staticmethod
    def _pulses(rabi_hz: Floats, detuning_hz: Floats, duration_s: float, phi: float) -> Complex:
        """Per shot: exp(−i t/2 (Ω σ_φ − Δ Z)) (sim/chain.py `detuned_pulse`, vectorised)."""
        omega = 2 * math.pi * rabi_hz
        delta = 2 * math.pi * detuning_hz
        general = np.hypot(omega, delta)
        safe = np.where(general > 0, general, 1.0)
        half = general * duration_s / 2
        c, s = np.cos(half), np.sin(half)
        nx, nz = omega / safe, -delta / safe
        e_m, e_p = np.exp(-1j * phi), np.exp(1j * phi)
        u = np.empty((rabi_hz.shape[0], 2, 2), dtype=np.complex128)
        u[:, 0, 0] = c - 1j * s * nz
        u[:, 1, 1] = c + 1j * s * nz
        u[:, 0, 1] = -1j * s * nx * e_m
        u[:, 1, 0] = -1j * s * nx * e_p
        return u

    @staticmethod
    def _ms(theta: Floats, phi_a: float, phi_b: float) -> Complex:
        sa = np.array([[0, np.exp(-1j * phi_a)], [np.exp(1j * phi_a), 0]])
        sb = np.array([[0, np.exp(-1j * phi_b)], [np.exp(1j * phi_b), 0]])
        pair = np.kron(sa, sb)
        eye = np.eye(4, dtype=np.complex128)
        half = theta[:, None, None] / 2
        return np.asarray(np.cos(half) * eye - 1j * np.sin(half) * pair, dtype=np.complex128)

    # ---- the run ------------------------------------------------------------------------------

    def run(self, ordered: Sequence[Pulse], shots: int, cond: RunConditions) -> ShotCounts:
        """Counts per shot per counting window (an int, or per-ion ints for `per_ion`)."""
        s = self.settings
        ion, chain = s.ion, s.chain
        rng = self.rng
        n = self.n
        psi = self._ground(shots)
        seen: list[dict[str, int | list[int]]] = [{} for _ in range(shots)]
        columns: list[list[int] | list[list[int]]] = []
        # the gate beams are the clock light after the clock AOM (they follow its steering)
        gate_detuning = cond.clock_aom_hz - cond.line_aom_hz
        cooled_at = 0.0
        frame = _LaserFrame(n, shots, cond.white_fm_h0, rng)
        tau = 1.0 / (2 * math.pi * ion.natural_linewidth)
        fluorescing = cond.present & ~cond.shelved[None, :]
        for p in ordered:
            start = p.t_ns * 1e-9
            duration = p.duration_ns * 1e-9
            mask: Bools | None = None
            if p.channel == "register" and p.condition is not None:
                # a classical register of the controller, computed in every shot (PROTOCOLS §9)
                assert p.window is not None
                for k in range(shots):
                    seen[k][p.window] = int(p.condition(seen[k]))
                continue
            if p.condition is not None:
                test = p.condition
                mask = np.fromiter((test(seen[k]) for k in range(shots)), bool, shots)
                if not mask.any() and p.window is None:
                    continue
            if p.ions is not None and p.channel in ("detect", "repump"):
                # some ions only: the others are hidden meanwhile (PROTOCOLS §10)
                psi = frame.catch_up(self, psi, range(n), start, gate_detuning)
                before = psi
                if p.channel == "detect":
                    psi, own = self._detect_some(
                        psi, p.ions, duration, cond, fluorescing=fluorescing, tau=tau
                    )
                    self._record(p, own, duration, columns, seen, played=mask)
                else:
                    psi = self._reset_some(psi, p.ions, chain.prep_error)
                psi = self._hide(psi, [i for i in range(n) if i not in p.ions])
                if mask is not None:  # a conditional segment: the other shots keep their state
                    psi = np.where(mask[:, None], psi, before)
                frame.touched(p.ions, start + duration)
                continue
            if mask is not None and p.channel in ("detect", "repump"):
                psi = frame.catch_up(self, psi, range(n), start, gate_detuning)
                before = psi
                if p.channel == "detect":
                    psi, own = self._detect(psi, duration, cond, fluorescing, tau)
                    self._record(p, own, duration, columns, seen, played=mask)
                else:
                    psi = self._prepare(self._ground(shots), chain.prep_error)
                psi = np.where(mask[:, None], psi, before)
                frame.touched(range(n), start + duration)
                continue
            if p.channel in ("cool", "repump"):
                psi = self._ground(shots)
                if p.channel == "repump":
                    psi = self._prepare(psi, chain.prep_error)
                else:
                    cooled_at = start + duration
                frame.reset(start + duration)
                if p.channel == "cool" and p.window is not None:
                    own = own_photons(rng, cond.bright_rate_hz, duration, fluorescing)
                    self._record(p, own, duration, columns, seen)
                continue
            if p.channel == "detect":
                psi, own = self._detect(psi, duration, cond, fluorescing, tau)
                frame.reset(start + duration)  # every ion projected: no phase left to track
                self._record(p, own, duration, columns, seen)
                continue
            # coherent pulses: first each ion they touch precesses, at this light's detuning,
            # from where its phase was last brought up to date to the pulse's start
            if p.channel == "clock":
                aom = cond.clock_aom_hz if p.frequency_hz is None else p.frequency_hz
                detuning = aom - cond.line_aom_hz
            else:
                detuning = gate_detuning
            if p.channel == "clock":
                psi = frame.catch_up(self, psi, range(n), start, detuning)
                psi = self._clock(psi, p, detuning, cond, mask)
                frame.touched(range(n), start + duration)
            elif p.channel == "raman":
                rabi = ion.gate_rabi_frequency * p.amplitude * (1 + chain.gate_over_rotation)
                factors = self.addressing.factors(p.target)
                driven = [i for i in range(n) if factors[i] > 0]
                psi = frame.catch_up(self, psi, driven, start, detuning)
                for target in driven:
                    rabis = np.full(shots, rabi * factors[target])
                    u = self._pulses(rabis, detuning, duration, p.phase_rad)
                    psi = self._apply_1q(psi, u, target, mask)
                frame.touched(driven, start + duration)
            elif p.channel == "ms":
                pair = list(p.targets)
                psi = frame.catch_up(self, psi, pair, start, detuning)
                psi = self._ms_gate(psi, p, start - cooled_at, mask)
                # the pair precesses through the gate: its phase is brought up to date later
            else:
                raise ValueError(f"unknown pulse channel '{p.channel}'")
        if not columns:
            return [[] for _ in range(shots)]
        return [list(shot) for shot in zip(*columns, strict=True)]

    def _prepare(self, psi: Complex, prep_error: float) -> Complex:
        """Optical pumping into |0…0⟩ leaves each ion in |1⟩ with `prep_error`."""
        if prep_error <= 0:
            return psi
        shots = psi.shape[0]
        wrong = self.rng.random((shots, self.n)) < prep_error
        if not wrong.any():
            return psi
        index = (wrong * (1 << np.arange(self.n - 1, -1, -1))).sum(axis=1)
        out = np.zeros_like(psi)
        out[np.arange(shots), index] = 1.0
        return out

    def _clock(
        self, psi: Complex, p: Pulse, detuning: Floats, cond: RunConditions, mask: Bools | None
    ) -> Complex:
        """The clock beam on every ion: the carrier or the nearer micromotion sideband."""
        duration = p.duration_ns * 1e-9
        shots = psi.shape[0]
        d = detuning
        if cond.white_fm_h0 > 0:
            d = d + math.sqrt(cond.white_fm_h0 / (2 * duration)) * self.rng.standard_normal(shots)
        factor = np.ones(shots)
        beta = cond.micromotion_beta
        if beta:
            f = cond.rf_frequency_hz
            options = np.stack([d, d - f, d + f])
            pick = np.argmin(np.abs(options), axis=0)
            d = options[pick, np.arange(shots)]
            factor = np.where(pick == 0, bessel_j(0, beta), bessel_j(1, beta))
        rabi = self.settings.ion.clock_rabi_frequency * p.amplitude * cond.clock_amplitude
        phase = p.phase_rad + cond.clock_phase_rad
        u = self._pulses(rabi * factor, d, duration, phase)
        for ion in range(self.n):
            psi = self._apply_1q(psi, u, ion, mask)
        return psi

    def _ms_gate(self, psi: Complex, p: Pulse, since_cool_s: float, mask: Bools | None) -> Complex:
        """MS through the COM mode: angle scaled per shot by the thermal Debye–Waller factor,
        then a heating jump's residual spin–motion entanglement as a σ_φ flip of one ion."""
        s = self.settings
        shots = psi.shape[0]
        duration = p.duration_ns * 1e-9
        theta = 2 * math.pi * s.ion.ms_rate * p.amplitude * duration
        theta *= 1 + s.chain.gate_over_rotation
        angles = theta * self.mode.angle_factors(self.rng, shots, since_cool_s)
        a, b = p.targets
        psi = self._apply_2q(psi, self._ms(angles, p.phase_rad, p.phase_b_rad), a, b, mask)
        jump: Bools = np.asarray(
            self.rng.random(shots) < self.mode.heating_flip_probability(duration), dtype=bool
        )
        if mask is not None:
            jump &= mask
        if jump.any():
            first: Bools = np.asarray(self.rng.random(shots) < 0.5, dtype=bool)
            flips: tuple[tuple[int, float, Bools], ...] = (
                (a, p.phase_rad, jump & first),
                (b, p.phase_b_rad, jump & ~first),
            )
            for ion, phi, rows in flips:
                flip = np.array([[0, np.exp(-1j * phi)], [np.exp(1j * phi), 0]])
                psi = self._apply_1q(psi, flip, ion, rows)
        return psi

    def _detect(
        self, psi: Complex, window_s: float, cond: RunConditions, fluorescing: Bools, tau: float
    ) -> tuple[Complex, npt.NDArray[np.int64]]:
        """Project every shot's chain, count each ion's own photons; an ion shelved in D3/2 may
        decay during the window and fluoresce for the rest of it (then it is in S½)."""
        shots = psi.shape[0]
        probs = np.abs(psi) ** 2
        cum = np.cumsum(probs, axis=1)
        u = self.rng.random(shots) * cum[:, -1]
        index = np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)
        bits = self.bits[index].astype(bool)  # shots × ions, True = |1> (dark)
        decay = self.rng.exponential(tau, bits.shape)
        decayed = bits & (decay < window_s)
        bright = ~bits & fluorescing
        own = own_photons(
            self.rng, cond.bright_rate_hz, window_s, bright, np.where(fluorescing, decay, np.inf)
        )
        after = bits & ~decayed
        index = (after * (1 << np.arange(self.n - 1, -1, -1))).sum(axis=1)
        out = np.zeros_like(psi)
        out[np.arange(shots), index] = 1.0
        return out, own

    def _project(self, psi: Complex, ion: int) -> tuple[Complex, Bools]:
        """Measure one ion in every shot: its outcome (True = |1>) and the projected state."""
        shots = psi.shape[0]
        v = psi.reshape(shots, 2**ion, 2, 2 ** (self.n - 1 - ion))
        p1 = np.clip(np.sum(np.abs(v[:, :, 1, :]) ** 2, axis=(1, 2)), 0.0, 1.0)
        bit: Bools = np.asarray(self.rng.random(shots) < p1, dtype=bool)
        out = v.copy()
        out[bit, :, 0, :] = 0
        out[~bit, :, 1, :] = 0
        norm = np.sqrt(np.where(bit, p1, 1 - p1))
        norm[norm < 1e-15] = 1.0
        out /= norm[:, None, None, None]
        return out.reshape(shots, -1), bit

    def _flip(self, psi: Complex, ion: int, rows: Bools) -> Complex:
        if not rows.any():
            return psi
        return self._apply_1q(psi, np.array([[0, 1], [1, 0]], dtype=np.complex128), ion, rows)

    def _detect_some(
        self,
        psi: Complex,
        ions: Sequence[int],
        window_s: float,
        cond: RunConditions,
        *,
        fluorescing: Bools,
        tau: float,
    ) -> tuple[Complex, npt.NDArray[np.int64]]:
        """Detection on `ions` only (the others hidden, counting nothing of their own)."""
        shots = psi.shape[0]
        dark = np.zeros((shots, self.n), dtype=bool)
        lit = np.zeros((shots, self.n), dtype=bool)
        for ion in ions:
            psi, bit = self._project(psi, ion)
            dark[:, ion] = bit
            lit[:, ion] = fluorescing[:, ion]
        decay = self.rng.exponential(tau, dark.shape)
        own = own_photons(
            self.rng, cond.bright_rate_hz, window_s, ~dark & lit, np.where(lit, decay, np.inf)
        )
        for ion in ions:
            psi = self._flip(psi, ion, dark[:, ion] & (decay[:, ion] < window_s))
        return psi, own

    def _reset_some(self, psi: Complex, ions: Sequence[int], prep_error: float) -> Complex:
        """Optical pumping of `ions` only: each ends in |0>, or |1> with `prep_error`."""
        shots = psi.shape[0]
        for ion in ions:
            psi, bit = self._project(psi, ion)
            wrong = self.rng.random(shots) < prep_error
            psi = self._flip(psi, ion, bit != wrong)
        return psi

    def _hide(self, psi: Complex, spectators: Sequence[int]) -> Complex:
        """Hiding a spectator from the detection light and back dephases it with
        `hiding_error`."""
        p = self.settings.chain.hiding_error
        if p <= 0:
            return psi
        shots = psi.shape[0]
        z = np.array([[1, 0], [0, -1]], dtype=np.complex128)
        for ion in spectators:
            rows: Bools = np.asarray(self.rng.random(shots) < p, dtype=bool)
            if rows.any():
                psi = self._apply_1q(psi, z, ion, rows)
        return psi

    def _record(
        self,
        p: Pulse,
        own: npt.NDArray[np.int64],
        window_s: float,
        columns: list[list[int] | list[list[int]]],
        seen: list[dict[str, int | list[int]]],
        *,
        played: Bools | None = None,
    ) -> None:
        """A window's counts in every shot; a conditional window not played in a shot counts
        nothing there (zeros) and stays unseen by the shot's later conditions."""
        assert p.window is not None
        if p.per_ion:
            rows: list[list[int]] = self.detector.pixels(self.rng, own, window_s).tolist()
            if played is not None:
                rows = [row if played[k] else [0] * len(row) for k, row in enumerate(rows)]
            columns.append(rows)
            for k, row in enumerate(rows):
                if played is None or played[k]:
                    seen[k][p.window] = row
        else:
            totals: list[int] = self.detector.total(self.rng, own, window_s).tolist()
            if played is not None:
                totals = [t if played[k] else 0 for k, t in enumerate(totals)]
            columns.append(totals)
            for k, total in enumerate(totals):
                if played is None or played[k]:
                    seen[k][p.window] = total


class _LaserFrame:
    """Each ion's phase in the frame of the gate light, brought up to date ion by ion: an ion
    precesses at the light's detuning from the line whenever it is not driven (H = −Δ/2 Z), and
    the laser's white FM (PSD h0) walks the phase of the light by (2π)²·h0·t/2 in variance,
    common to every ion."""

    def __init__(self, n: int, shots: int, h0: float, rng: np.random.Generator) -> None:
        self.h0 = h0
        self.rng = rng
        self.t = 0.0
        self.walk = np.zeros(shots)
        self.since = np.zeros(n)  # time up to which each ion's phase is accounted for
        self.seen = np.zeros((n, shots))  # the light's phase walk at that time

    def _walk_to(self, t: float) -> None:
        if t > self.t:
            if self.h0 > 0:
                step = 2 * math.pi * math.sqrt(self.h0 * (t - self.t) / 2)
                self.walk = self.walk + step * self.rng.standard_normal(self.walk.shape[0])
            self.t = t

    def catch_up(
        self, run: ChainRun, psi: Complex, ions: Sequence[int] | range, t: float, d: Floats
    ) -> Complex:
        self._walk_to(t)
        for i in ions:
            gap = t - self.since[i]
            if gap > 0:
                phi = 2 * math.pi * d * gap + (self.walk - self.seen[i])
                psi = run._phase(psi, i, phi)
                self.since[i] = t
                self.seen[i] = self.walk
        return psi

    def touched(self, ions: Sequence[int] | range, t_end: float) -> None:
        for i in ions:
            self.since[i] = max(self.since[i], t_end)
            self.seen[i] = self.walk

    def reset(self, t: float) -> None:
        self._walk_to(t)
        self.since[:] = t
        self.seen[:] = self.walk
