"""The linear ion chain's internal state: a numpy state vector over N ≤ 10 two-level ions
(|0⟩ = S½, bright; |1⟩ = D3/2, dark), driven by R(θ, φ), detuned clock pulses and MS gates."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Complex = npt.NDArray[np.complex128]

_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Y = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
_Z = np.array([[1, 0], [0, -1]], dtype=np.complex128)
_I2 = np.eye(2, dtype=np.complex128)


def sigma_phi(phi: float) -> Complex:
    return math.cos(phi) * _X + math.sin(phi) * _Y


def rotation(theta: float, phi: float) -> Complex:
    """R(θ, φ) = exp(−iθ/2 (cos φ X + sin φ Y))."""
    return math.cos(theta / 2) * _I2 - 1j * math.sin(theta / 2) * sigma_phi(phi)


def detuned_pulse(rabi_hz: float, detuning_hz: float, duration_s: float, phi: float) -> Complex:
    """Propagator of H = ½(Ω σ_φ − Δ Z) for a time t (Ω, Δ in rad/s from the Hz given)."""
    omega = 2 * math.pi * rabi_hz
    delta = 2 * math.pi * detuning_hz
    general = math.hypot(omega, delta)
    if general == 0.0:
        return _I2.copy()
    half = general * duration_s / 2
    generator = (omega * sigma_phi(phi) - delta * _Z) / general
    return math.cos(half) * _I2 - 1j * math.sin(half) * generator


def molmer_sorensen(theta: float, phi_a: float, phi_b: float) -> Complex:
    """MS(θ; φa, φb) = exp(−iθ/2 σ_φa ⊗ σ_φb) as a 4×4 matrix (index = 2·a + b)."""
    pair = np.kron(sigma_phi(phi_a), sigma_phi(phi_b))
    return math.cos(theta / 2) * np.eye(4, dtype=np.complex128) - 1j * math.sin(theta / 2) * pair


class IonChain:
    """State vector of N ions, tensor-shaped (2,)*N; ion 0 is the first axis."""

    def __init__(self, n_ions: int, rng: np.random.Generator) -> None:
        self.n = n_ions
        self.rng = rng
        self.psi: Complex = np.zeros((2,) * n_ions, dtype=np.complex128)
        self.reset()

    def reset(self) -> None:
        self.psi[...] = 0.0
        self.psi[(0,) * self.n] = 1.0

    def apply_1q(self, u: Complex, ion: int) -> None:
        moved = np.asarray(np.tensordot(u, self.psi, axes=([1], [ion])), dtype=np.complex128)
        self.psi = np.moveaxis(moved, 0, ion)

    def apply_global(self, u: Complex) -> None:
        for ion in range(self.n):
            self.apply_1q(u, ion)

    def apply_2q(self, u: Complex, a: int, b: int) -> None:
        u4 = u.reshape(2, 2, 2, 2)
        moved = np.asarray(np.tensordot(u4, self.psi, axes=([2, 3], [a, b])), dtype=np.complex128)
        self.psi = np.moveaxis(moved, [0, 1], [a, b])

    def probabilities(self) -> npt.NDArray[np.float64]:
        return np.abs(self.psi.reshape(-1)) ** 2

    def excitation(self, ion: int) -> float:
        p = np.abs(self.psi) ** 2
        return float(np.sum(np.take(p, 1, axis=ion)))

    def measure(self) -> tuple[int, ...]:
        """Project onto a computational basis state; returns its bits (1 = excited, dark)."""
        p = self.probabilities()
        index = int(self.rng.choice(p.size, p=p / p.sum()))
        bits = tuple(int(b) for b in np.binary_repr(index, width=self.n))
        self.psi[...] = 0.0
        self.psi[bits] = 1.0
        return bits

    def set_basis(self, bits: tuple[int, ...]) -> None:
        self.psi[...] = 0.0
        self.psi[bits] = 1.0
