"""The simulated chain: sizes, seeds, the error model, mid-circuit measurement, results format."""

import math

import pytest

from ionpilot.sequencer import Circuit, compile_program, get_backend, run_program
from ionpilot.sequencer.device import with_ions
from ionpilot.sequencer.library import ghz, random_circuit
from ionpilot.sequencer.results import bitstring, wilson_interval
from ionpilot.sequencer.settings import DeviceSettings, ErrorModelSettings

DEVICE = DeviceSettings()


def run(circuit, device=DEVICE, ideal=True, shots=1000, seed=5):
    program = compile_program(circuit, device)
    return run_program(program, get_backend("sim", device, ideal=ideal), device, shots, seed)


def test_twelve_ions_ghz():
    device = with_ions(DEVICE, 12)
    result = run(ghz(12), device)
    assert result["probabilities"] == pytest.approx({"0" * 12: 0.5, "1" * 12: 0.5}, abs=1e-9)


def test_seeded_shots_are_reproducible():
    c = random_circuit(4, 30, 2)
    assert run(c, seed=9)["counts"] == run(c, seed=9)["counts"]
    assert run(c, seed=9)["counts"] != run(c, seed=10)["counts"]


def test_error_model_changes_outcomes_and_ideal_switches_it_off():
    c = Circuit(1, 1).x(0).measure(0, 0)
    assert run(c, ideal=True)["probabilities"] == {"1": 1.0}
    noisy = DeviceSettings(
        error_model=ErrorModelSettings(over_rotation=0.1, readout_error_bright=0.05)
    )
    p0 = run(c, device=noisy, ideal=False, shots=2000)["probabilities"]["0"]
    expected = math.sin(math.pi * 1.1 / 2 - math.pi / 2) ** 2  # over-rotation leaves some |0>
    assert p0 > 0.05 + expected * 0.9


def test_spam_only():
    device = DeviceSettings(
        error_model=ErrorModelSettings(
            over_rotation=0,
            detuning=0,
            dephasing_time=math.inf,
            prep_error=0,
            readout_error_dark=0.01,
            readout_error_bright=0.03,
        )
    )
    c = Circuit(2, 2).x(1).measure(0, 0).measure(1, 1)
    probs = run(c, device=device, ideal=False)["probabilities"]
    assert probs["10"] == pytest.approx(0.99 * 0.97)
    assert probs["00"] == pytest.approx(0.99 * 0.03)


def test_dephasing_destroys_ramsey_contrast():
    device = DeviceSettings(
        error_model=ErrorModelSettings(
            over_rotation=0,
            detuning=0,
            dephasing_time=1e-4,
            prep_error=0,
            readout_error_dark=0,
            readout_error_bright=0,
        )
    )
    c = Circuit(1, 1)
    c.h(0)
    for _ in range(6):
        c.barrier(0)
        c.x(0)
    c.barrier(0)
    c.h(0).measure(0, 0)
    probs = run(c, device=device, ideal=False, shots=2000)["probabilities"]
    assert 0.05 < probs.get("0", 0) < 0.95


def test_mid_circuit_measurement_and_reset_exact():
    c = Circuit(2, 3)
    c.h(0).measure(0, 0).reset(0).x(0).cx(0, 1).measure(0, 1).measure(1, 2)
    probs = run(c)["probabilities"]
    assert probs == pytest.approx({"110": 0.5, "111": 0.5}, abs=1e-12)


def test_bit_order_and_wilson():
    assert bitstring(0b011, [("a", 2), ("b", 1)], 3) == "0 11"
    assert bitstring(0b001, [("c", 3)], 3) == "001"
    lo, hi = wilson_interval(0, 100)
    assert lo == pytest.approx(0, abs=1e-12) and 0.03 < hi < 0.04
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)


def test_program_without_measurements_measures_everything():
    c = Circuit(2).x(1)
    result = run(c)
    assert result["counts"] == {"10": 1000}


def test_too_many_qubits_for_device():
    from ionpilot.sequencer import SequencerError

    with pytest.raises(SequencerError, match="device has 5 ions"):
        compile_program(ghz(6), DEVICE)
