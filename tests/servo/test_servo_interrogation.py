"""Probe geometry against the line shapes themselves (REFERENCE.md §1)."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from ionpilot.servo.interrogation import (
    ProbeSpec,
    lock_probe,
    servo_time_constant_s,
    update_interval_s,
)
from ionpilot.servo.settings import ClockLockSettings

NU0 = 688_358_979_309_308.0


def rabi_pi(detuning_hz, t):
    rabi = 1 / (2 * t)
    general2 = rabi**2 + detuning_hz**2
    return rabi**2 / general2 * np.sin(np.pi * t * np.sqrt(general2)) ** 2


@pytest.mark.parametrize("t", [0.02, 0.08])
def test_rabi_constants_follow_from_the_line_shape(t):
    probe = ProbeSpec("rabi", t, 0.02)
    half_max = brentq(lambda d: rabi_pi(d, t) - 0.5, 0.1 / t, 1 / t)
    assert probe.half_width_hz == pytest.approx(half_max, rel=1e-3)
    assert probe.fwhm_hz == pytest.approx(2 * half_max, rel=1e-3)
    h = 1e-4
    d0 = probe.half_width_hz
    slope = (rabi_pi(d0 - h, t) - rabi_pi(d0 + h, t)) / (2 * h)
    assert probe.slope_per_hz == pytest.approx(slope, rel=1e-3)
    # projection noise of one probe at the half-width point, as a frequency
    p = rabi_pi(d0, t)
    per_probe = math.sqrt(p * (1 - p)) / slope
    assert probe.qpn_coefficient(NU0) == pytest.approx(
        per_probe / NU0 * math.sqrt(probe.cycle_time_s), rel=2e-3
    )


def test_yb_e2_default_lock_reaches_the_published_qpn():
    settings = ClockLockSettings()
    probe = lock_probe(settings)
    # 80 ms π pulse, 0.1 s cycle: 1.51e-15/√τ (REFERENCE §2: ≈ 1.6e-15/√τ)
    assert probe.qpn_coefficient(NU0) == pytest.approx(1.514e-15, rel=2e-3)
    assert update_interval_s(settings) == pytest.approx(2.0)
    assert servo_time_constant_s(settings) == pytest.approx(4.0)


def test_ramsey_geometry():
    probe = ProbeSpec("ramsey", 0.005, 0.02, dark_time_s=0.3)
    t_eff = 0.3 + 4 * 0.005 / math.pi
    assert probe.effective_time_s == pytest.approx(t_eff)
    assert probe.half_width_hz == pytest.approx(1 / (4 * t_eff))
    assert probe.slope_per_hz == pytest.approx(math.pi * t_eff)
    assert probe.cycle_time_s == pytest.approx(0.33)
    assert probe.qpn_coefficient(NU0) == pytest.approx(
        1 / (2 * math.pi * NU0 * t_eff) * math.sqrt(0.33)
    )


def test_error_sign_light_above_the_line_is_positive():
    probe = ProbeSpec("rabi", 0.08, 0.02)
    # light above the line: the low-side probe sits nearer the centre and is excited more
    assert probe.error_hz(8, 2, 10) > 0
    assert probe.error_hz(5, 5, 10) == 0
    assert probe.error_hz(3, 7, 10) == pytest.approx(-0.4 / (2 * 1.897 * 0.08))


def test_settings_refuse_unstable_gains():
    with pytest.raises(ValueError):
        ClockLockSettings(gain=2.5)
    with pytest.raises(ValueError):
        ClockLockSettings(gain=0.5, drift_gain=0.6)
