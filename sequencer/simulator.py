"""The simulated ion chain: a numpy state vector that replays a pulse schedule.

The simulator reads the schedule, not the gates it came from: a carrier pulse on an ion's addressed
beam rotates that ion by θ = 2π·f_Rabi·amplitude·t about the axis set by its phase (a frequency
offset from the AOM centre is a detuning, solved exactly); a global-beam pulse does the same to
every ion; two simultaneous bichromatic pulses on two ions' beams are an MS gate with
θ = (π/2)·a_a·a_b·t/t_MS; optical pumping resets, detection windows measure. The error model
(over-rotation, detuning, dephasing from T2, preparation and readout errors, addressing crosstalk
onto the neighbours of an addressed ion, and the MS gate's
motional error: a σ_φ flip of one ion of the pair with probability 1.25·(1 − F_MS), F_MS the
device's benchmarked MS fidelity, as heating leaves it on the trap, sim/PROTOCOLS.md §10) is read
from the device settings and switched off with `ideal=True`. Probabilities are exact for the ideal chain
(mid-circuit measurements are followed branch by branch); with noise they are averaged over the
sampled noise trajectories. Shots are drawn from a seeded numpy Generator.
"""

from __future__ import annotations

import cmath
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ionpilot.sequencer.errors import ScheduleError, SequencerError
from ionpilot.sequencer.gates import CArray
from ionpilot.sequencer.schedule import Schedule, validate_schedule
from ionpilot.sequencer.settings import DeviceSettings

MAX_QUBITS = 22
MAX_CLBITS = 22
MAX_BRANCHES = 4096
MAX_RECORDS = 62
_TRAJECTORY_BUDGET = 1 << 21  # complex amplitudes held at once by the shot-by-shot path
_CHECKPOINT_BUDGET = 1 << 23  # complex amplitudes kept for trajectory restarts


@dataclass
class Step:
    """One operation of the replay: 'u1'/'u2' (matrix on qubits), 'measure', 'reset'."""

    kind: str
    qubits: tuple[int, ...]
    matrix: CArray | None = None
    clbits: tuple[int, ...] = ()
    duration_s: float = 0.0
    condition: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    errors: tuple[CArray, ...] = ()  # per qubit: the flip a gate error applies to it
    error_p: float = 0.0  # probability of that flip, per qubit


@dataclass
class SimulationResult:
    """Counts and the outcome distribution, keyed by the integer value of the classical bits."""

    counts: dict[int, int]
    probabilities: dict[int, float]
    shots: int
    exact: bool


def carrier_matrix(theta: float, phi: float, detuning_phase: float = 0.0) -> CArray:
    """exp(-i/2 (θ (cos φ X + sin φ Y) + δ Z)) with δ = Δ·t: a carrier pulse, detuned or not."""
    omega = math.hypot(theta, detuning_phase)
    if omega < 1e-15:
        return np.eye(2, dtype=np.complex128)
    c, s = math.cos(omega / 2), math.sin(omega / 2)
    nx, ny, nz = (
        theta * math.cos(phi) / omega,
        theta * math.sin(phi) / omega,
        detuning_phase / omega,
    )
    return np.array(
        [[c - 1j * s * nz, -1j * s * (nx - 1j * ny)], [-1j * s * (nx + 1j * ny), c + 1j * s * nz]],
        dtype=np.complex128,
    )


def _rz(angle: float) -> CArray:
    return np.diag([cmath.exp(-0.5j * angle), cmath.exp(0.5j * angle)]).astype(np.complex128)


def _ms(theta: float, phi_a: float, phi_b: float) -> CArray:
    sa = np.array([[0, cmath.exp(-1j * phi_a)], [cmath.exp(1j * phi_a), 0]])
    sb = np.array([[0, cmath.exp(-1j * phi_b)], [cmath.exp(1j * phi_b), 0]])
    return np.asarray(
        math.cos(theta / 2) * np.eye(4) - 1j * math.sin(theta / 2) * np.kron(sa, sb),
        dtype=np.complex128,
    )


def ms_flip_probability(device: DeviceSettings) -> float:
    """Per ion of an MS pair: the σ_φ flip probability that makes the gate's average fidelity the
    device's (a one-qubit Pauli on a two-qubit gate costs 4/5 of its probability)."""
    return max(0.0, 1.0 - device.ms_gate.fidelity) * 1.25 / 2


def _sigma(phi: float) -> CArray:
    return np.array([[0, cmath.exp(-1j * phi)], [cmath.exp(1j * phi), 0]], dtype=np.complex128)


def interpret(schedule: Schedule, device: DeviceSettings, ideal: bool) -> list[Step]:
    """Turn timed events into the ordered list of operations they perform on the ions."""
    n = schedule.num_qubits
    unit = schedule.time_unit_s
    em = device.error_model
    over = 0.0 if ideal else em.over_rotation
    det_rad_s = 0.0 if ideal else 2 * math.pi * em.detuning
    crosstalk = 0.0 if ideal else em.addressing_crosstalk
    ms_t = math.ceil(device.ms_gate.duration / unit / device.grid_mu - 1e-6) * device.grid_mu
    steps: list[Step] = []
    events = sorted(schedule.events, key=lambda e: (e.start_mu, e.channel))
    pending_ms: dict[tuple[int, int], list[Any]] = {}
    for e in events:
        ch = device.channels.get(e.channel)
        if ch is None:
            raise ScheduleError([(e.name, f"unknown channel '{e.channel}'")])
        t = e.duration_mu * unit
        cond = e.condition
        if e.kind == "pump":
            for q in e.qubits:
                steps.append(Step("reset", (q,), duration_s=t, condition=cond))
        elif e.kind == "detect":
            steps.append(Step("measure", e.qubits, clbits=e.clbits, duration_s=t, condition=cond))
        elif e.kind == "pulse":
            if ch.kind == "beam_addressed":
                targets: tuple[int, ...] = (ch.ion,) if ch.ion is not None else ()
            else:
                targets = tuple(range(n))
            if e.sideband_hz > 0:
                key = (e.start_mu, e.duration_mu)
                pending_ms.setdefault(key, []).append((e, targets[0]))
                pair = pending_ms[key]
                if len(pair) == 2:
                    (ea, qa), (eb, qb) = pair
                    del pending_ms[key]
                    theta = (math.pi / 2) * ea.amplitude * eb.amplitude * e.duration_mu / ms_t
                    m = _ms(theta * (1 + over), ea.phase_rad, eb.phase_rad)
                    if det_rad_s:
                        # in the frame of the ions' resonance, as the carrier pulses: the pair
                        # precesses through the gate like any idle ion (the phases the gate
                        # sees are those of the light at its start)
                        frame = _rz(det_rad_s * e.start_mu * unit)
                        both = np.kron(frame, frame)
                        m = both @ m @ both.conj().T
                    steps.append(
                        Step(
                            "u2",
                            (qa, qb),
                            m,
                            duration_s=t,
                            condition=ea.condition,
                            errors=(_sigma(ea.phase_rad), _sigma(eb.phase_rad)),
                            error_p=0.0 if ideal else ms_flip_probability(device),
                        )
                    )
                continue
            theta = 2 * math.pi * ch.rabi_frequency * e.amplitude * t * (1 + over)
            delta = 2 * math.pi * (e.frequency_hz - ch.aom_center_frequency) + det_rad_s
            m1 = carrier_matrix(theta, e.phase_rad, -delta * t)
            if delta:
                # in the frame of the ion's resonance the laser phase advances by Δ·t, so free
                # evolution between pulses (Ramsey) is accounted for exactly
                t0 = e.start_mu * unit
                m1 = _rz(delta * (t0 + t)) @ m1 @ _rz(-delta * t0)
            for q in targets:
                steps.append(Step("u1", (q,), m1, duration_s=t, condition=cond))
            if crosstalk and ch.kind == "beam_addressed" and ch.ion is not None:
                # the addressed beam's wings drive the neighbours, with the same phase
                weak = carrier_matrix(theta * crosstalk, e.phase_rad, -delta * t)
                if delta:
                    t0 = e.start_mu * unit
                    weak = _rz(delta * (t0 + t)) @ weak @ _rz(-delta * t0)
                for q in (ch.ion - 1, ch.ion + 1):
                    if 0 <= q < n:
                        steps.append(Step("u1", (q,), weak, duration_s=t, condition=cond))
    if pending_ms:
        names = [pair[0][0].name for pair in pending_ms.values()]
        raise ScheduleError([(name, "bichromatic pulse without its partner") for name in names])
    return steps


class _Engine:
    """State-vector kernels on a flat array, qubit 0 the least significant bit."""

    def __init__(self, n: int) -> None:
        self.n = n

    def zero(self) -> CArray:
        psi = np.zeros(2**self.n, dtype=np.complex128)
        psi[0] = 1.0
        return psi

    def apply(self, psi: CArray, step: Step) -> CArray:
        n = self.n
        assert step.matrix is not None
        if step.kind == "u1":
            q = step.qubits[0]
            v = psi.reshape(2 ** (n - 1 - q), 2, 2**q)
            return np.matmul(step.matrix, v).reshape(-1)
        qa, qb = step.qubits
        tensor = psi.reshape((2,) * n)
        axes = [n - 1 - qa, n - 1 - qb]
        out = np.tensordot(step.matrix.reshape(2, 2, 2, 2), tensor, axes=([2, 3], axes))
        return np.ascontiguousarray(np.moveaxis(out, [0, 1], axes)).reshape(-1)

    def one_prob(self, psi: CArray, q: int) -> float:
        v = psi.reshape(2 ** (self.n - 1 - q), 2, 2**q)
        return float(np.sum(np.abs(v[:, 1, :]) ** 2))

    def project(self, psi: CArray, q: int, bit: int, prob: float) -> CArray:
        v = psi.reshape(2 ** (self.n - 1 - q), 2, 2**q).copy()
        v[:, 1 - bit, :] = 0
        return (v / math.sqrt(prob)).reshape(-1)

    def flip(self, psi: CArray, q: int) -> CArray:
        v = psi.reshape(2 ** (self.n - 1 - q), 2, 2**q)
        return np.ascontiguousarray(v[:, ::-1, :]).reshape(-1)

    def phase_flip(self, psi: CArray, q: int) -> CArray:
        v = psi.reshape(2 ** (self.n - 1 - q), 2, 2**q).copy()
        v[:, 1, :] *= -1
        return v.reshape(-1)


class SimulatedChain:
    """Runs schedules on a simulated chain of `device.ions` ions (the `sim` backend)."""

    name = "sim"

    def __init__(self, device: DeviceSettings, ideal: bool = False) -> None:
        self.device = device
        self.ideal = ideal

    def run(self, schedule: Schedule, shots: int, seed: int | None = None) -> SimulationResult:
        """Validate, replay and sample `shots` repetitions of `schedule`."""
        validate_schedule(schedule, self.device)
        if schedule.num_qubits > MAX_QUBITS:
            raise SequencerError(f"the simulator handles at most {MAX_QUBITS} ions")
        if schedule.derived or any(e.condition is not None for e in schedule.events):
            if shots < 1:
                raise SequencerError("shots must be at least 1")
            if schedule.num_clbits > MAX_RECORDS:
                raise SequencerError(
                    f"the simulator keeps at most {MAX_RECORDS} measurement records per shot"
                )
            steps = interpret(schedule, self.device, self.ideal)
            return _Trajectories(
                schedule.num_qubits,
                schedule.num_clbits,
                steps,
                self.device,
                self.ideal,
                derived=schedule.derived,
            ).sample(shots, np.random.default_rng(seed))
        if schedule.num_clbits > MAX_CLBITS:
            raise SequencerError(f"the simulator handles at most {MAX_CLBITS} classical bits")
        if shots < 1:
            raise SequencerError("shots must be at least 1")
        rng = np.random.default_rng(seed)
        steps = interpret(schedule, self.device, self.ideal)
        runner = _Runner(
            schedule.num_qubits, max(schedule.num_clbits, 0), steps, self.device, self.ideal
        )
        return runner.sample(shots, rng)


class _Runner:
    def __init__(
        self, n: int, ncl: int, steps: list[Step], device: DeviceSettings, ideal: bool
    ) -> None:
        self.n = n
        self.ncl = ncl
        self.steps = steps
        self.engine = _Engine(n)
        em = device.error_model
        self.ideal = ideal
        self.readout = (0.0, 0.0) if ideal else (em.readout_error_dark, em.readout_error_bright)
        self.prep = 0.0 if ideal else em.prep_error
        self.t2 = math.inf if ideal else em.dephasing_time
        # a measurement is terminal if nothing later touches its qubits
        touched_later: set[int] = set()
        self.terminal = [False] * len(steps)
        for i in range(len(steps) - 1, -1, -1):
            st = steps[i]
            if st.kind == "measure" and not touched_later.intersection(st.qubits):
                self.terminal[i] = True
            touched_later.update(st.qubits)
        self.first_gate = self._first_gate()
        self.linear = all(
            self.terminal[i]
            or st.kind in ("u1", "u2")
            or (st.kind == "reset" and i < self.first_gate)
            for i, st in enumerate(steps)
        )

    def _first_gate(self) -> int:
        for i, st in enumerate(self.steps):
            if st.kind in ("u1", "u2"):
                return i
        return len(self.steps)

    # -- exact distribution of one trajectory (noise events fixed) --

    def distribution(
        self,
        flips: dict[int, list[tuple[int, int]]] | None = None,
        prep_flips: tuple[int, ...] = (),
        start: tuple[int, CArray] | None = None,
    ) -> np.ndarray:
        eng = self.engine
        if start is not None:
            first, psi0 = start
        else:
            first, psi0 = 0, eng.zero()
            for q in prep_flips:
                psi0 = eng.flip(psi0, q)
        branches: list[tuple[float, CArray, int]] = [(1.0, psi0, 0)]
        terminal_map: dict[int, int] = {}
        for i in range(first, len(self.steps)):
            st = self.steps[i]
            if st.kind in ("u1", "u2"):
                branches = [(w, eng.apply(psi, st), cl) for w, psi, cl in branches]
                if flips and i in flips:
                    for q, kind in flips[i]:
                        if kind == 0:
                            branches = [(w, eng.phase_flip(psi, q), cl) for w, psi, cl in branches]
                        else:  # the gate's own error flip on this qubit
                            flip = Step("u1", (q,), st.errors[st.qubits.index(q)])
                            branches = [(w, eng.apply(psi, flip), cl) for w, psi, cl in branches]
            elif st.kind == "measure" and self.terminal[i]:
                for q, c in zip(st.qubits, st.clbits, strict=True):
                    if c >= 0:
                        terminal_map[c] = q
            elif st.kind == "measure":
                for q, c in zip(st.qubits, st.clbits, strict=True):
                    branches = self._split(branches, q, c)
            elif st.kind == "reset":
                if i < self.first_gate:
                    continue  # the chain starts in |0...0>; preparation errors are sampled
                for q in st.qubits:
                    branches = self._split(branches, q, -1, reset=True)
            if len(branches) > MAX_BRANCHES:
                raise SequencerError("too many mid-circuit measurement branches to simulate")
        return self._classical(branches, terminal_map)

    def _split(
        self, branches: list[tuple[float, CArray, int]], q: int, c: int, reset: bool = False
    ) -> list[tuple[float, CArray, int]]:
        eng = self.engine
        out: list[tuple[float, CArray, int]] = []
        e_dark, e_bright = self.readout
        for w, psi, cl in branches:
            p1 = min(max(eng.one_prob(psi, q), 0.0), 1.0)
            for bit, p in ((0, 1.0 - p1), (1, p1)):
                if p < 1e-14:
                    continue
                post = eng.project(psi, q, bit, p)
                if reset:
                    if bit:
                        post = eng.flip(post, q)
                    if self.prep:
                        out.append((w * p * (1 - self.prep), post, cl))
                        out.append((w * p * self.prep, eng.flip(post, q), cl))
                    else:
                        out.append((w * p, post, cl))
                    continue
                if c < 0:
                    out.append((w * p, post, cl))
                    continue
                err = e_bright if bit else e_dark
                base = cl & ~(1 << c)
                out.append((w * p * (1 - err), post, base | (bit << c)))
                if err:
                    out.append((w * p * err, post, base | ((1 - bit) << c)))
        return out

    def _classical(
        self, branches: list[tuple[float, CArray, int]], terminal: dict[int, int]
    ) -> np.ndarray:
        size = 2**self.ncl
        dist = np.zeros(size)
        idx = np.arange(2**self.n)
        for w, psi, cl in branches:
            probs = np.abs(psi) ** 2
            key = np.full(idx.shape, cl & ~sum(1 << c for c in terminal), dtype=np.int64)
            for c, q in terminal.items():
                key |= ((idx >> q) & 1) << c
            dist += w * np.bincount(key, weights=probs, minlength=size)
        e_dark, e_bright = self.readout
        if e_dark or e_bright:
            for c in terminal:
                shaped = dist.reshape(2 ** (self.ncl - 1 - c), 2, 2**c)
                p0, p1 = shaped[:, 0, :].copy(), shaped[:, 1, :].copy()
                shaped[:, 0, :] = (1 - e_dark) * p0 + e_bright * p1
                shaped[:, 1, :] = e_dark * p0 + (1 - e_bright) * p1
        total = dist.sum()
        return dist / total if total > 0 else dist

    # -- sampling --

    def sample(self, shots: int, rng: np.random.Generator) -> SimulationResult:
        size = 2**self.ncl
        stochastic = not self.ideal and (
            self.prep > 0 or math.isfinite(self.t2) or any(st.error_p for st in self.steps)
        )
        if not stochastic:
            dist = self.distribution()
            counts = rng.multinomial(shots, dist)
            return SimulationResult(_nonzero_counts(counts), _nonzero_probs(dist), shots, True)
        patterns = self._noise_patterns(shots, rng)
        total = np.zeros(size)
        counts = np.zeros(size, dtype=np.int64)
        checkpoints = self._checkpoints() if self.linear else None
        for pattern, n_shots in patterns.items():
            prep, flips = pattern
            flip_map: dict[int, list[tuple[int, int]]] = {}
            for i, q, kind in flips:
                flip_map.setdefault(i, []).append((q, kind))
            start = None
            if checkpoints is not None and not prep and flips:
                first = min(i for i, _, _ in flips)
                if first in checkpoints:
                    start = (first, checkpoints[first])
            if checkpoints is not None and not prep and not flips and "final" in checkpoints:
                dist = self._final_from_checkpoint(checkpoints)
            else:
                dist = self.distribution(flip_map, prep, start)
            total += dist * (n_shots / shots)
            counts += rng.multinomial(n_shots, dist)
        return SimulationResult(_nonzero_counts(counts), _nonzero_probs(total), shots, False)

    def _noise_patterns(
        self, shots: int, rng: np.random.Generator
    ) -> dict[tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]], int]:
        """Per shot: the prepared flips and the (step, qubit, kind) noise events, kind 0 a
        dephasing phase flip, 1 the step's own error flip; counted by pattern."""
        slots: list[tuple[int, int, int]] = []
        probs: list[float] = []
        for i, st in enumerate(self.steps):
            if st.kind in ("u1", "u2") and math.isfinite(self.t2):
                p = 0.5 * (1 - math.exp(-st.duration_s / self.t2))
                for q in st.qubits:
                    slots.append((i, q, 0))
                    probs.append(p)
            if st.error_p > 0:
                for q in st.qubits:
                    slots.append((i, q, 1))
                    probs.append(st.error_p)
        per_shot: list[list[tuple[int, int, int]]] = [[] for _ in range(shots)]
        prep_shot: list[list[int]] = [[] for _ in range(shots)]
        if slots:
            hits = rng.binomial(shots, np.array(probs))
            for s_index in np.nonzero(hits)[0]:
                for shot in rng.choice(shots, int(hits[s_index]), replace=False):
                    per_shot[int(shot)].append(slots[int(s_index)])
        if self.prep > 0:
            hits_q = rng.binomial(shots, self.prep, size=self.n)
            for q in range(self.n):
                for shot in rng.choice(shots, int(hits_q[q]), replace=False):
                    prep_shot[int(shot)].append(q)
        counter: Counter[tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]] = Counter()
        for shot in range(shots):
            counter[(tuple(sorted(prep_shot[shot])), tuple(sorted(per_shot[shot])))] += 1
        return dict(counter)

    def _checkpoints(self) -> dict[Any, Any] | None:
        """States after each gate step of the noise-free trajectory, if memory allows."""
        gate_steps = sum(1 for st in self.steps if st.kind in ("u1", "u2"))
        if gate_steps * 2**self.n > _CHECKPOINT_BUDGET:
            return None
        eng = self.engine
        psi = eng.zero()
        out: dict[Any, Any] = {}
        for i, st in enumerate(self.steps):
            if st.kind in ("u1", "u2"):
                out[i] = psi  # state *before* step i
                psi = eng.apply(psi, st)
        out["final"] = psi
        return out

    def _final_from_checkpoint(self, checkpoints: dict[Any, Any]) -> np.ndarray:
        terminal: dict[int, int] = {}
        for i, st in enumerate(self.steps):
            if st.kind == "measure" and self.terminal[i]:
                for q, c in zip(st.qubits, st.clbits, strict=True):
                    if c >= 0:
                        terminal[c] = q
        return self._classical([(1.0, checkpoints["final"], 0)], terminal)


def _nonzero_counts(counts: np.ndarray) -> dict[int, int]:
    return {int(k): int(counts[k]) for k in np.nonzero(counts)[0]}


def _nonzero_probs(dist: np.ndarray) -> dict[int, float]:
    return {int(k): float(dist[k]) for k in np.nonzero(dist > 1e-15)[0]}


class _Trajectories:
    """Shot-by-shot simulation for schedules with conditional segments, all shots of a batch at
    once: a state vector per shot (rows of one array), measurements sampled per shot, each
    conditional step applied to the shots whose records satisfy it. A qubit takes a slot of the
    state vector from its first operation to its last measurement, so a program that measures
    and re-uses ions (teleportation chains) needs only as many slots as it has live qubits."""

    def __init__(
        self,
        n: int,
        nrec: int,
        steps: list[Step],
        device: DeviceSettings,
        ideal: bool,
        *,
        derived: Sequence[tuple[int, tuple[int, ...], tuple[int, ...]]] = (),
    ) -> None:
        em = device.error_model
        self.nrec = nrec
        self.derived = {r: (inputs, accepted) for r, inputs, accepted in derived}
        self.order = [r for r, _, _ in derived]
        self.readout = (0.0, 0.0) if ideal else (em.readout_error_dark, em.readout_error_bright)
        self.prep = 0.0 if ideal else em.prep_error
        self.t2 = math.inf if ideal else em.dephasing_time
        self.steps = steps
        last: dict[int, int] = {}
        for i, st in enumerate(steps):
            if st.kind in ("u1", "u2", "measure"):
                for q in st.qubits:
                    last[q] = i
        self.last = last
        live: set[int] = set()
        peak = 1
        for i, st in enumerate(steps):
            if st.kind in ("u1", "u2", "measure"):
                live.update(st.qubits)
                peak = max(peak, len(live))
                for q in st.qubits:
                    if last[q] == i:
                        live.discard(q)
        self.slots = peak

    def sample(self, shots: int, rng: np.random.Generator) -> SimulationResult:
        size = 1 << self.slots
        batch = max(1, min(shots, _TRAJECTORY_BUDGET // size))
        keys: list[np.ndarray] = []
        done = 0
        while done < shots:
            count = min(batch, shots - done)
            keys.append(self._batch(count, rng))
            done += count
        values, counts = np.unique(np.concatenate(keys), return_counts=True)
        out = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
        return SimulationResult(out, {k: v / shots for k, v in out.items()}, shots, False)

    def _batch(self, shots: int, rng: np.random.Generator) -> np.ndarray:
        m = self.slots
        psi = np.zeros((shots, 1 << m), dtype=np.complex128)
        psi[:, 0] = 1.0
        rec = np.zeros((shots, max(self.nrec, 1)), dtype=np.int64)
        slot: dict[int, int] = {}
        free = list(range(m - 1, -1, -1))
        every = np.ones(shots, dtype=bool)
        known: set[int] = set()  # derived records computed so far (their inputs are final)
        for i, st in enumerate(self.steps):
            if st.condition is not None:
                self._derive(st.condition[0], rec, known)
            mask = every if st.condition is None else self._mask(st.condition, rec)
            if not mask.any():
                continue
            if st.kind == "reset":
                for q in st.qubits:
                    if q in slot:
                        psi = self._reset(psi, slot[q], mask, rng)
                continue
            for q in st.qubits:
                if q not in slot:
                    slot[q] = free.pop()
                    if self.prep:
                        flip = rng.random(shots) < self.prep
                        psi = _flip_rows(psi, m, slot[q], flip)
            if st.kind == "u1":
                psi = _apply1(psi, m, slot[st.qubits[0]], st.matrix, mask)
            elif st.kind == "u2":
                pair = (slot[st.qubits[0]], slot[st.qubits[1]])
                psi = _apply2(psi, m, pair, st.matrix, mask)
            elif st.kind == "measure":
                for q, c in zip(st.qubits, st.clbits, strict=True):
                    k = slot[q]
                    bit, psi = _measure(psi, m, k, mask, rng)
                    if c >= 0:
                        e_dark, e_bright = self.readout
                        read = bit.copy()
                        if e_dark or e_bright:
                            err = np.where(bit == 1, e_bright, e_dark)
                            read ^= (rng.random(shots) < err).astype(np.int64)
                        rec[mask, c] = read[mask]
                    if self.last.get(q) == i and st.condition is None:
                        psi = _flip_rows(psi, m, k, bit.astype(bool))
                        free.append(slot.pop(q))
            if st.error_p > 0:
                for q, error in zip(st.qubits, st.errors, strict=True):
                    hit = mask & (rng.random(shots) < st.error_p)
                    if hit.any():
                        psi = _apply1(psi, m, slot[q], error, hit)
            if st.kind in ("u1", "u2") and math.isfinite(self.t2):
                p = 0.5 * (1 - math.exp(-st.duration_s / self.t2))
                for q in st.qubits:
                    hit = mask & (rng.random(shots) < p)
                    if hit.any():
                        psi = _phase_rows(psi, m, slot[q], hit)
            for q in st.qubits:
                if q in slot and self.last.get(q) == i:
                    # nothing reads this qubit again: measuring it (outcome discarded) leaves
                    # the others' statistics unchanged (no signalling), and frees its slot
                    k = slot.pop(q)
                    bit, psi = _measure(psi, m, k, every, rng)
                    psi = _flip_rows(psi, m, k, bit.astype(bool))
                    free.append(k)
        self._derive(self.order, rec, known)
        weights = np.left_shift(np.int64(1), np.arange(rec.shape[1], dtype=np.int64))
        return (rec * weights).sum(axis=1) if self.nrec else np.zeros(shots, dtype=np.int64)

    def _derive(self, records: Sequence[int], rec: np.ndarray, known: set[int]) -> None:
        """Compute the derived records among `records` (and those they read), as the pulse
        controller does once their inputs are measured."""
        for r in records:
            if r in known or r not in self.derived:
                continue
            inputs, accepted = self.derived[r]
            self._derive(inputs, rec, known)
            rec[:, r] = self._mask((inputs, accepted), rec)
            known.add(r)

    def _mask(self, condition: tuple[tuple[int, ...], tuple[int, ...]], rec: np.ndarray) -> Any:
        records, accepted = condition
        pattern = np.zeros(rec.shape[0], dtype=np.int64)
        for j, r in enumerate(records):
            pattern |= rec[:, r] << j
        table = np.zeros(1 << len(records), dtype=bool)
        table[list(accepted)] = True
        return table[pattern]

    def _reset(self, psi: CArray, k: int, mask: Any, rng: np.random.Generator) -> CArray:
        m = self.slots
        bit, psi = _measure(psi, m, k, mask, rng)
        flip = mask & (bit == 1)
        if self.prep:
            flip ^= mask & (rng.random(psi.shape[0]) < self.prep)
        return _flip_rows(psi, m, k, flip)


def _view(psi: CArray, m: int, k: int) -> CArray:
    return psi.reshape(psi.shape[0], 1 << (m - 1 - k), 2, 1 << k)


def _apply1(psi: CArray, m: int, k: int, matrix: Any, mask: Any) -> CArray:
    v = _view(psi, m, k)
    new = np.einsum("ab,sibj->siaj", matrix, v)
    if mask.all():
        return new.reshape(psi.shape)
    out = v.copy()
    out[mask] = new[mask]
    return out.reshape(psi.shape)


def _apply2(psi: CArray, m: int, slots: tuple[int, int], matrix: Any, mask: Any) -> CArray:
    ka, kb = slots
    s = psi.shape[0]
    tensor = psi.reshape((s,) + (2,) * m)
    axes = [m - ka, m - kb]  # row axis first
    out = np.tensordot(tensor, matrix.reshape(2, 2, 2, 2), axes=(axes, [2, 3]))
    out = np.moveaxis(out, [m - 1, m], axes).reshape(psi.shape)
    if mask.all():
        return np.ascontiguousarray(out)
    res = psi.copy()
    res[mask] = out[mask]
    return res


def _measure(
    psi: CArray, m: int, k: int, mask: Any, rng: np.random.Generator
) -> tuple[np.ndarray, CArray]:
    v = _view(psi, m, k)
    p1 = np.clip(np.sum(np.abs(v[:, :, 1, :]) ** 2, axis=(1, 2)), 0.0, 1.0)
    bit = (rng.random(psi.shape[0]) < p1).astype(np.int64)
    bit[~mask] = 0
    out = v.copy()
    rows = np.nonzero(mask)[0]
    one = bit[rows] == 1
    out[rows[one], :, 0, :] = 0
    out[rows[~one], :, 1, :] = 0
    norm = np.where(one, np.sqrt(p1[rows]), np.sqrt(1 - p1[rows]))
    norm[norm < 1e-15] = 1.0
    out[rows] /= norm[:, None, None, None]
    return bit, out.reshape(psi.shape)


def _flip_rows(psi: CArray, m: int, k: int, rows: Any) -> CArray:
    if not np.any(rows):
        return psi
    v = _view(psi, m, k).copy()
    v[rows] = v[rows][:, :, ::-1, :]
    return v.reshape(psi.shape)


def _phase_rows(psi: CArray, m: int, k: int, rows: Any) -> CArray:
    v = _view(psi, m, k).copy()
    v[rows, :, 1, :] *= -1
    return v.reshape(psi.shape)
