"""Standard test and benchmark circuits built with the Python API (QFT, GHZ, Grover, adders,
Toffoli networks, random circuits); the tests and the benchmark share them."""

from __future__ import annotations

import math

import numpy as np

from ionpilot.sequencer.circuit import Circuit
from ionpilot.sequencer.gates import STD_GATES


def ghz(n: int) -> Circuit:
    """GHZ state on n qubits."""
    c = Circuit(n, name=f"ghz{n}")
    c.h(0)
    for q in range(n - 1):
        c.cx(q, q + 1)
    return c


def qft(n: int, swaps: bool = True) -> Circuit:
    """Quantum Fourier transform on n qubits (on a non-trivial input)."""
    c = Circuit(n, name=f"qft{n}")
    for q in range(n):
        c.rx(0.3 + 0.2 * q, q)
    for j in reversed(range(n)):
        c.h(j)
        for k in reversed(range(j)):
            c.cp(math.pi / 2 ** (j - k), k, j)
    if swaps:
        for q in range(n // 2):
            c.swap(q, n - 1 - q)
    return c


def grover(n: int, marked: int, iterations: int | None = None) -> Circuit:
    """Grover search for `marked` on n qubits (multi-controlled Z from Toffolis and ancillas
    is avoided: n <= 3 uses cz/ccx-based phase oracles directly)."""
    if n not in (2, 3):
        raise ValueError("grover() is built for 2 or 3 qubits")
    c = Circuit(n, name=f"grover{n}_{marked}")
    iterations = iterations or (1 if n == 2 else 2)
    for q in range(n):
        c.h(q)

    def mcz() -> None:
        if n == 2:
            c.cz(0, 1)
        else:
            c.h(2)
            c.ccx(0, 1, 2)
            c.h(2)

    for _ in range(iterations):
        for q in range(n):
            if not (marked >> q) & 1:
                c.x(q)
        mcz()
        for q in range(n):
            if not (marked >> q) & 1:
                c.x(q)
        for q in range(n):
            c.h(q)
            c.x(q)
        mcz()
        for q in range(n):
            c.x(q)
            c.h(q)
    return c


def cuccaro_adder(bits: int, a: int, b: int) -> Circuit:
    """Ripple-carry adder (Cuccaro et al.): cin, a[bits], b[bits], cout = 2*bits + 2 qubits."""
    n = 2 * bits + 2
    c = Circuit(n, name=f"adder{bits}_{a}_{b}")
    cin, cout = 0, n - 1
    qa = [1 + 2 * i for i in range(bits)]
    qb = [2 + 2 * i for i in range(bits)]
    for i in range(bits):
        if (a >> i) & 1:
            c.x(qa[i])
        if (b >> i) & 1:
            c.x(qb[i])

    def maj(x: int, y: int, z: int) -> None:
        c.cx(z, y)
        c.cx(z, x)
        c.ccx(x, y, z)

    def uma(x: int, y: int, z: int) -> None:
        c.ccx(x, y, z)
        c.cx(z, x)
        c.cx(x, y)

    maj(cin, qb[0], qa[0])
    for i in range(1, bits):
        maj(qa[i - 1], qb[i], qa[i])
    c.cx(qa[-1], cout)
    for i in reversed(range(1, bits)):
        uma(qa[i - 1], qb[i], qa[i])
    uma(cin, qb[0], qa[0])
    return c


def toffoli_network(n: int, depth: int, seed: int) -> Circuit:
    """Random Toffoli/CNOT/X network on a superposed input."""
    rng = np.random.default_rng(seed)
    c = Circuit(n, name=f"toffoli{n}_{seed}")
    for q in range(n):
        c.ry(float(rng.uniform(0, math.pi)), q)
    for _ in range(depth):
        kind = int(rng.integers(3))
        if kind == 0 and n >= 3:
            a, b, t = (int(x) for x in rng.choice(n, 3, replace=False))
            c.ccx(a, b, t)
        elif kind == 1:
            a, b = (int(x) for x in rng.choice(n, 2, replace=False))
            c.cx(a, b)
        else:
            c.x(int(rng.integers(n)))
    return c


def random_circuit(n: int, gates: int, seed: int, names: list[str] | None = None) -> Circuit:
    """Random circuit over the standard gate library (or `names`) with random angles."""
    rng = np.random.default_rng(seed)
    pool = [g for g in (names or sorted(STD_GATES)) if STD_GATES[g].num_qubits <= n]
    c = Circuit(n, name=f"random{n}_{gates}_{seed}")
    for _ in range(gates):
        name = pool[int(rng.integers(len(pool)))]
        spec = STD_GATES[name]
        qubits = tuple(int(q) for q in rng.choice(n, spec.num_qubits, replace=False))
        params = tuple(float(p) for p in rng.uniform(-math.pi, math.pi, spec.num_params))
        c.append(name, qubits, params)
    return c


def benchmark_suite() -> list[Circuit]:
    """The circuits of the correctness tests and the compile-speed benchmark (>= 40, 1-10 qubits)."""
    out: list[Circuit] = []
    out += [ghz(n) for n in (2, 3, 5, 8, 10)]
    out += [qft(n) for n in (1, 2, 3, 4, 5, 6, 8, 10)]
    out += [grover(2, m) for m in range(4)] + [grover(3, m) for m in (0, 5, 7)]
    out += [
        cuccaro_adder(1, 1, 1),
        cuccaro_adder(2, 2, 3),
        cuccaro_adder(3, 5, 6),
        cuccaro_adder(4, 9, 7),
    ]
    out += [toffoli_network(n, 12, seed) for n, seed in ((3, 1), (4, 2), (5, 3), (6, 4), (8, 5))]
    out += [
        random_circuit(n, 20 + 4 * n, seed)
        for seed, n in enumerate((1, 2, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9, 10))
    ]
    out += [random_circuit(10, 60, 99, names=["h", "cx", "rz", "t", "cp", "swap", "ccx"])]
    return out
