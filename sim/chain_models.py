"""The ion chain as a processor, in models of its own behind the World's facade (PROTOCOLS §10).

* `Addressing`: which ions a gate beam drives and how strongly (the addressed ion, its two
  neighbours at `addressing_crosstalk` of its Rabi frequency; a global beam drives all alike).
* `MotionalMode`: the axial COM mode the Mølmer–Sørensen gate runs through: thermal phonons after
  Doppler cooling scale the gate angle by their Debye–Waller factor exp(−η²(2n+1)) (calibrated at
  the mean), heating during the gate leaves spin–motion entanglement behind (a σ_φ flip of one of
  the pair with probability ṅ·τ).
* `Detector`: one pixel per ion (camera regions or a PMT array): a bright ion's photons, a small
  fraction of its neighbours' (`detection_crosstalk`), the pixel's stray light. Readout fidelity
  is what its bright/dark histograms give, measured (`readout_fidelity`), not a set figure.

Every model works on whole runs of shots at once (numpy arrays over shots), so 2,000 shots of a
five-ion circuit cost milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .settings import ChainSettings, IonSettings

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Addressing:
    """Per-ion Rabi-frequency factors of a gate beam."""

    n_ions: int
    crosstalk: float

    def factors(self, target: int | None) -> Floats:
        """1 for every ion under a global beam; 1 on `target` and `crosstalk` on its neighbours
        under an addressed beam."""
        if target is None:
            return np.ones(self.n_ions)
        out = np.zeros(self.n_ions)
        out[target] = 1.0
        for neighbour in (target - 1, target + 1):
            if 0 <= neighbour < self.n_ions:
                out[neighbour] = self.crosstalk
        return out


@dataclass(frozen=True)
class MotionalMode:
    """The COM mode: thermal occupation, heating, and what they do to the MS gate."""

    lamb_dicke: float
    mean_phonons: float
    heating_rate_per_s: float

    def mean_at(self, since_cooling_s: float) -> float:
        return self.mean_phonons + self.heating_rate_per_s * max(0.0, since_cooling_s)

    def angle_factors(self, rng: np.random.Generator, shots: int, since_cooling_s: float) -> Floats:
        """Per shot: the MS angle relative to the calibrated one, for a thermal phonon number
        drawn at the mean reached `since_cooling_s` after the last cooling."""
        nbar = self.mean_at(since_cooling_s)
        n = rng.geometric(1.0 / (1.0 + nbar), shots) - 1 if nbar > 0 else np.zeros(shots)
        eta2 = self.lamb_dicke**2
        return np.asarray(np.exp(-eta2 * (2 * n - 2 * self.mean_phonons)), dtype=np.float64)

    def heating_flip_probability(self, duration_s: float) -> float:
        """Chance that a heating jump during a gate of this length leaves the pair flipped."""
        return min(1.0, self.heating_rate_per_s * duration_s)

    def ms_infidelity(self, duration_s: float) -> float:
        """Predicted average infidelity of one MS gate: the heating flips (a one-qubit Pauli on
        a two-qubit gate costs 4/5 of its probability) and the thermal angle spread
        (Var θ ≈ (θ·2η²)²·n̄(n̄+1) at θ = π/2, costing Var θ/5 for two qubits)."""
        eta2 = self.lamb_dicke**2
        n = self.mean_phonons
        spread = (math.pi / 2 * 2 * eta2) ** 2 * n * (n + 1)
        return 0.8 * self.heating_flip_probability(duration_s) + spread / 5


@dataclass(frozen=True)
class Detector:
    """Per-ion photon counting: own light, neighbours' light, stray light."""

    n_ions: int
    crosstalk: float
    pixel_background_rate_hz: float
    pmt_background_rate_hz: float

    def pixels(self, rng: np.random.Generator, own: Ints, window_s: float) -> Ints:
        """Counts per shot and ion (shots × ions) from each ion's own photons."""
        spill = np.zeros(own.shape, dtype=np.float64)
        spill[:, 1:] += own[:, :-1]
        spill[:, :-1] += own[:, 1:]
        mean = self.crosstalk * spill + self.pixel_background_rate_hz * window_s
        return own + rng.poisson(mean)

    def total(self, rng: np.random.Generator, own: Ints, window_s: float) -> Ints:
        """Counts per shot on one detector that sees the whole chain (the PMT)."""
        shots = own.shape[0]
        return own.sum(axis=1) + rng.poisson(self.pmt_background_rate_hz * window_s, shots)


def own_photons(
    rng: np.random.Generator,
    rate_hz: float,
    window_s: float,
    bright: Bools,
    decay_s: Floats | None = None,
) -> Ints:
    """Each ion's own detected photons (shots × ions): bright ions for the whole window, ions
    that decayed from D3/2 at `decay_s` (< window) for the rest of it, others none."""
    on = np.where(bright, window_s, 0.0)
    if decay_s is not None:
        on = np.where(~bright & (decay_s < window_s), window_s - decay_s, on)
    return rng.poisson(rate_hz * on).astype(np.int64)


@dataclass(frozen=True)
class ReadoutFidelity:
    """A detector's measured readout: bright ions read bright, dark ions read dark."""

    bright_correct: float  # P(count >= threshold | |0>)
    dark_correct: float  # P(count < threshold | |1>)
    shots: int

    @property
    def error_bright_read_dark(self) -> float:
        return 1.0 - self.bright_correct

    @property
    def error_dark_read_bright(self) -> float:
        return 1.0 - self.dark_correct

    def uncertainty(self, p: float) -> float:
        return math.sqrt(max(p * (1 - p), 1.0 / self.shots) / self.shots)


def readout_fidelity(
    ion: IonSettings,
    chain: ChainSettings,
    n_ions: int,
    *,
    window_s: float,
    threshold: int,
    shots: int,
    rng: np.random.Generator,
    fluorescence: float = 1.0,
) -> ReadoutFidelity:
    """Histograms of the detector's counts for a chain prepared all bright, then all dark (the
    D3/2 level decaying with its natural lifetime during the window), read at `threshold`."""
    detector = Detector(n_ions, chain.detection_crosstalk, chain.pixel_background_rate, 0.0)
    rate = ion.bright_count_rate * fluorescence
    tau = 1.0 / (2 * math.pi * ion.natural_linewidth)
    bright = np.ones((shots, n_ions), dtype=bool)
    counts_bright = detector.pixels(rng, own_photons(rng, rate, window_s, bright), window_s)
    decay = rng.exponential(tau, (shots, n_ions))
    dark_own = own_photons(rng, rate, window_s, ~bright, decay)
    counts_dark = detector.pixels(rng, dark_own, window_s)
    return ReadoutFidelity(
        float(np.mean(counts_bright >= threshold)),
        float(np.mean(counts_dark < threshold)),
        shots * n_ions,
    )
